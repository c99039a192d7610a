# Working bucket: raw/YYYYMMDD/ (copied from the client), temp/YYYYMMDD/ (Dask
# intermediates) and processed/YYYYMMDD/ (results copied back to the client).

resource "google_storage_bucket" "main" {
  #checkov:skip=CKV_GCP_62:Usage logs are a legacy feature that needs a second bucket. Object access is audited through Cloud Audit Logs (enable Data Access logs for storage.googleapis.com where required).
  project       = var.project_id
  name          = local.bucket_name
  location      = local.bucket_location
  storage_class = var.bucket.storage_class
  labels        = local.labels
  force_destroy = var.bucket.force_destroy

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age            = var.bucket.raw_retention_days
      matches_prefix = ["raw/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age            = var.bucket.temp_retention_days
      matches_prefix = ["temp/"]
    }
    action {
      type = "Delete"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.bucket.processed_retention_days == null ? [] : [var.bucket.processed_retention_days]
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = ["processed/"]
      }
      action {
        type = "Delete"
      }
    }
  }

  # With versioning on, "Delete" above only makes the live object noncurrent;
  # this rule removes noncurrent versions for good.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.bucket.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Parts left behind by interrupted multipart uploads (a killed Dask worker).
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.main]
}
