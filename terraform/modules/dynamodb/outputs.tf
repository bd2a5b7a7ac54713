output "state_table_arns" {
  description = "ARNs of the state tables in this region."
  value       = [for t in var.state_tables : aws_dynamodb_table.this[t].arn]
}

output "control_table_arn" {
  value = aws_dynamodb_table.this[var.control_table].arn
}

output "state_table_replica_arns" {
  description = "ARNs of the state tables' replicas in replica_region."
  value       = [for t in var.state_tables : one([for r in aws_dynamodb_table.this[t].replica : r.arn])]
}

output "control_table_replica_arn" {
  value = one([for r in aws_dynamodb_table.this[var.control_table].replica : r.arn])
}
