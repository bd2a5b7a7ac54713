output "oidc_provider_arn" {
  description = "IRSA: the cluster's IAM OIDC provider (null with Pod Identity)."
  value       = var.pod_identity_role_arn == null ? data.aws_iam_openid_connect_provider.this[0].arn : null
}

output "oidc_issuer" {
  description = "IRSA: the issuer without https://."
  value       = local.issuer
}
