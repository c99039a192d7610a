# Secret Manager secrets. Terraform creates the secrets only, and operators add the
# values with `gcloud secrets versions add` (docs/deploy.md), so no secret value
# is ever in code or in the Terraform state.

locals {
  secrets = merge(
    local.use_aws_role_arn ? {} : {
      aws_source_credentials = {
        secret_id   = "${var.name_prefix}-aws-source-credentials"
        description = "JSON {\"access_key_id\": ..., \"secret_access_key\": ...} that Storage Transfer Service uses to read the client's input bucket."
      }
    },
    {
      aws_flow_credentials = {
        secret_id   = "${var.name_prefix}-aws-flow-credentials"
        description = "JSON {\"access_key_id\": ..., \"secret_access_key\": ...} that the flow uses to list and read the client's input prefix and to write results to the output prefix (LMCO2_CREDENTIALS__AWS_SECRET)."
      }
      notification_webhook_url = {
        secret_id   = "${var.name_prefix}-notification-webhook-url"
        description = "Webhook URL that the flow posts run summaries to."
      }
      prefect_api_key = {
        secret_id   = "${var.name_prefix}-prefect-api-key"
        description = "Prefect API key copied into the Kubernetes secret prefect-api-key that the Prefect worker reads."
      }
    },
  )
}

resource "google_secret_manager_secret" "main" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = each.value.secret_id
  labels    = local.labels

  annotations = {
    description = each.value.description
  }

  # Keeps the secret payloads in the same region as the data.
  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.main]
}
