// Package deploycheck holds static checks of the deployment files
// (terraform/, nomad/, ansible/): they parse, they are internally
// consistent, and they match the real binaries — every metric a dashboard or
// alert uses is registered by the Go code, every environment variable a job
// sets is read by it, ports and kill timeouts agree with the code. The
// package has only tests; nothing imports it.
package deploycheck
