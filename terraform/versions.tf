terraform {
  # Validation blocks that compare two variables need Terraform 1.9 or later.
  required_version = ">= 1.9, < 2.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # NOTE: `credentials_secret` on `aws_s3_data_source` exists only in 7.x
      # releases. Which 7.x minor added it was not checked offline.
      version = ">= 7.0, < 8.0"
    }
  }
}
