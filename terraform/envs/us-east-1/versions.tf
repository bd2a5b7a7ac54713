terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
  # State in S3 with locking; pass bucket and key with -backend-config (README "Deploy to EKS").
  backend "s3" {}
}
