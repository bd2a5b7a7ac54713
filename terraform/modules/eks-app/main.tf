# The EKS side of the relay's identity: the cluster's OIDC provider for IRSA (inputs of
# relay-iam), or an EKS Pod Identity association. The Kubernetes objects themselves are k8s/
# (kustomize), applied per region after this.

data "aws_eks_cluster" "this" {
  name = var.cluster_name
}

locals {
  issuer = replace(data.aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

data "aws_iam_openid_connect_provider" "this" {
  count = var.pod_identity_role_arn == null ? 1 : 0
  url   = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

resource "aws_eks_pod_identity_association" "relay" {
  count           = var.pod_identity_role_arn == null ? 0 : 1
  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = var.pod_identity_role_arn
}
