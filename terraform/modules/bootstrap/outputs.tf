output "user_data" {
  description = "Cloud-init user data (plain text; launch templates base64-encode it)."
  value       = local.user_data
}
