variable "cluster_name" {
  description = "The EKS cluster the relay runs in."
  type        = string
}

variable "namespace" {
  type    = string
  default = "cdc-relay"
}

variable "service_account" {
  type    = string
  default = "cdc-relay"
}

variable "pod_identity_role_arn" {
  description = "With EKS Pod Identity: the relay's role (relay-iam with pod_identity = true) to associate with the ServiceAccount. Null with IRSA."
  type        = string
  default     = null
}
