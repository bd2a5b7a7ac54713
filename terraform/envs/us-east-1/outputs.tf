output "relay_role_arn" {
  description = "k8s/overlays/us-east-1/serviceaccount.yaml: eks.amazonaws.com/role-arn."
  value       = module.relay.relay_role_arn
}
