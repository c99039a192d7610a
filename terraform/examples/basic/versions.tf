terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.0, < 8.0"
    }
  }

  # State lives in a separate, pre-created bucket (docs/deploy.md, step 2):
  #   terraform init -backend-config="bucket=<STATE_BUCKET>" -backend-config="prefix=lm-co2"
  backend "gcs" {}
}
