output "relay_role_arn" {
  description = "k8s/overlays/us-west-2/serviceaccount.yaml: eks.amazonaws.com/role-arn."
  value       = module.relay.relay_role_arn
}

output "state_table_arns" {
  value = module.tables.state_table_arns
}

output "control_table_arn" {
  value = module.tables.control_table_arn
}

output "replica_kms_key_arn" {
  description = "The us-east-1 replicas' key (us-east-1's relay role may use it)."
  value       = module.replica_key.arn
}
