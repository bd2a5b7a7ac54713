output "role_arn" {
  description = "For the ServiceAccount's eks.amazonaws.com/role-arn annotation (k8s/overlays/<region>/serviceaccount.yaml)."
  value       = aws_iam_role.relay.arn
}

output "role_name" {
  value = aws_iam_role.relay.name
}
