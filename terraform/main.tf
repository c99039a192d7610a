# Shared names, labels and project data used by every other file.

locals {
  labels = merge(var.labels, {
    app        = "lm-co2"
    managed-by = "terraform"
  })

  cluster_name     = coalesce(var.cluster.name, var.name_prefix)
  cluster_location = coalesce(var.cluster.location, "${var.region}-a")
  bucket_name      = coalesce(var.bucket.name, "${var.project_id}-${var.name_prefix}")
  bucket_location  = coalesce(var.bucket.location, upper(var.region))

  workload_identity_pool = "${var.project_id}.svc.id.goog"

  # Custom role IDs allow only letters, digits, dots and underscores.
  role_id_prefix = replace(var.name_prefix, "-", "_")

  # STS expects the project number, not the project ID, in the secret name.
  aws_source_secret_name = "projects/${data.google_project.main.number}/secrets/${var.name_prefix}-aws-source-credentials"
  use_aws_role_arn       = var.aws_source_role_arn != null
}

data "google_project" "main" {
  project_id = var.project_id
}

resource "google_project_service" "main" {
  for_each = var.enable_project_services ? toset(concat(
    [
      "artifactregistry.googleapis.com",
      "compute.googleapis.com",
      "container.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "secretmanager.googleapis.com",
      "storage.googleapis.com",
      "storagetransfer.googleapis.com",
    ],
    var.enable_binary_authorization ? ["binaryauthorization.googleapis.com"] : [],
  )) : toset([])

  project = var.project_id
  service = each.value

  # Other workloads in the project may use the same APIs.
  disable_on_destroy = false
}
