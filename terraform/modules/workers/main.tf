# The bare-metal worker fleet of one region. Nomad places one
# opensandbox-worker allocation on every host of node class "worker" (a
# system job); scaling the fleet is scaling this group.

locals {
  asg_name  = "${var.name}-workers"
  hook_name = var.drain_hook_name
}

resource "aws_launch_template" "worker" {
  name_prefix   = "${var.name}-worker-"
  image_id      = var.ami_id
  instance_type = var.instance_type
  user_data     = base64encode(var.user_data)

  iam_instance_profile {
    name = var.instance_profile_name
  }

  network_interfaces {
    associate_public_ip_address = var.public_ip
    security_groups             = [var.security_group_id]
    delete_on_termination       = true
  }

  # IMDSv2 only and one hop: a sandbox (its own network namespace) never
  # reaches the host's credentials even when its network is enabled.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.root_volume_gb
      volume_type           = "gp3"
      iops                  = 6000
      throughput            = 500
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.name}-worker", opensandbox-role = "worker" })
  }

  tags = var.tags
}

resource "aws_autoscaling_group" "workers" {
  name                      = local.asg_name
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  vpc_zone_identifier       = var.subnet_ids
  health_check_type         = "EC2"
  health_check_grace_period = 600
  # Sandboxes do not migrate: never let AWS rebalance a busy host away.
  capacity_rebalance        = false
  suspended_processes       = ["AZRebalance"]
  wait_for_capacity_timeout = "0"

  launch_template {
    id      = aws_launch_template.worker.id
    version = aws_launch_template.worker.latest_version
  }

  # A terminating worker waits here while the host drains (see
  # ansible/roles/worker_drain); the host completes the action itself.
  initial_lifecycle_hook {
    name                 = local.hook_name
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    default_result       = "CONTINUE"
    heartbeat_timeout    = var.drain_timeout_seconds
  }

  lifecycle {
    ignore_changes = [desired_capacity]
  }

  dynamic "tag" {
    for_each = var.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }
}
