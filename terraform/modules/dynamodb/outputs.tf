output "state_table_arns" {
  description = "ARNs of the state tables in this region."
  value       = [for t in aws_dynamodb_table.state : t.arn]
}

output "control_table_arn" {
  value = aws_dynamodb_table.control.arn
}

output "state_table_replica_arns" {
  description = "ARNs of the state tables' replicas in replica_region."
  value       = [for t in aws_dynamodb_table.state : one([for r in t.replica : r.arn])]
}

output "control_table_replica_arn" {
  value = one([for r in aws_dynamodb_table.control.replica : r.arn])
}
