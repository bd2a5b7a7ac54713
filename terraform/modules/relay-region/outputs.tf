output "relay_role_arn" {
  description = "k8s/overlays/<region>/serviceaccount.yaml: eks.amazonaws.com/role-arn."
  value       = module.relay_iam.role_arn
}

output "bus_arn" {
  value = module.bus.bus_arn
}

output "dlq_queue_url" {
  value = module.dlq.queue_url
}
