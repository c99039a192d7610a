# Storage Transfer Service job: client S3 input/ -> raw/ in our bucket.
# The job has no schedule block, so it only runs when the daily flow calls
# RunTransferJob. STS cannot write to S3, so the flow copies processed/ back itself.

data "google_storage_transfer_project_service_account" "main" {
  project = var.project_id

  depends_on = [google_project_service.main]
}

resource "google_storage_transfer_job" "main" {
  count = var.create_transfer_job ? 1 : 0

  project     = var.project_id
  description = "${var.name_prefix}: s3://${var.client_s3.input_bucket}/${var.client_s3.input_prefix} to gs://${local.bucket_name}/raw/"

  transfer_spec {
    aws_s3_data_source {
      bucket_name = var.client_s3.input_bucket
      path        = var.client_s3.input_prefix

      # Exactly one of the two is set: the role ARN when given, else the secret.
      role_arn           = local.use_aws_role_arn ? var.aws_source_role_arn : null
      credentials_secret = local.use_aws_role_arn ? null : local.aws_source_secret_name
    }

    gcs_data_sink {
      bucket_name = google_storage_bucket.main.name
      path        = "raw/"
    }

    object_conditions {
      max_time_elapsed_since_last_modification = "${var.transfer.max_object_age_days * 86400}s"
    }

    transfer_options {
      overwrite_when                            = var.transfer.overwrite_when
      delete_objects_unique_in_sink             = false
      delete_objects_from_source_after_transfer = false
    }
  }

  lifecycle {
    precondition {
      condition     = var.transfer.max_object_age_days < var.bucket.raw_retention_days
      error_message = "The transfer.max_object_age_days must be smaller than bucket.raw_retention_days, otherwise objects expired from raw/ are copied again on the next run."
    }
  }

  depends_on = [
    google_storage_bucket_iam_member.transfer_sink,
    google_secret_manager_secret_iam_member.transfer_aws_source,
  ]
}
