# Service accounts and least-privilege grants.
#
#   identity            | Kubernetes SA (Workload Identity) | access
#   --------------------+-----------------------------------+------------------------------------------
#   flow runner         | lm-co2-flow-runner                | read and write every prefix (the fetch phase
#                       |                                   | repairs raw/ objects that the transfer left
#                       |                                   | missing or different), run and watch the
#                       |                                   | transfer job, read the flow's AWS
#                       |                                   | credentials and the webhook secrets
#   dask                | lm-co2-dask                       | read raw/, write temp/ and processed/
#   nodes               | (node VMs)                        | logs, metrics, pull images
#   STS service agent   | (Google-managed)                  | write raw/, read the AWS source secret
#
# The Prefect worker itself needs no Google identity: it only talks to the
# Prefect API and the Kubernetes API.

locals {
  bucket_resource   = "projects/_/buckets/${local.bucket_name}"
  bucket_type_match = "resource.type == \"storage.googleapis.com/Bucket\""

  # Bucket grants limited to object prefixes with IAM Conditions. Listing is a
  # bucket-level permission, so every condition also matches the bucket itself.
  prefix_grants = {
    dask_read_raw = {
      member   = "serviceAccount:${google_service_account.dask.email}"
      role     = "roles/storage.objectViewer"
      prefixes = ["raw/"]
    }
    dask_write_outputs = {
      member   = "serviceAccount:${google_service_account.dask.email}"
      role     = "roles/storage.objectUser"
      prefixes = ["temp/", "processed/"]
    }
  }

  workload_identity_bindings = {
    flow_runner = {
      service_account_id = google_service_account.flow_runner.name
      kubernetes_sa      = var.kubernetes_service_accounts.flow_runner
    }
    dask = {
      service_account_id = google_service_account.dask.name
      kubernetes_sa      = var.kubernetes_service_accounts.dask
    }
  }

  flow_runner_secret_keys = ["aws_flow_credentials", "notification_webhook_url"]
}

# --- Service accounts ---------------------------------------------------------

resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-nodes"
  display_name = "${var.name_prefix} GKE nodes"
  description  = "Node VMs of the ${var.name_prefix} cluster: logs, metrics and image pulls only."
}

resource "google_service_account" "flow_runner" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-flow"
  display_name = "${var.name_prefix} flow runner"
  description  = "Prefect flow-run pods (Kubernetes SA ${var.kubernetes_service_accounts.flow_runner})."
}

resource "google_service_account" "dask" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-dask"
  display_name = "${var.name_prefix} Dask"
  description  = "Dask scheduler and worker pods (Kubernetes SA ${var.kubernetes_service_accounts.dask})."
}

# --- Nodes --------------------------------------------------------------------

resource "google_project_iam_member" "nodes_default" {
  project = var.project_id
  role    = "roles/container.defaultNodeServiceAccount"
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_artifact_registry_repository_iam_member" "nodes_reader" {
  project    = var.project_id
  location   = google_artifact_registry_repository.main.location
  repository = google_artifact_registry_repository.main.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.nodes.email}"
}

# --- Workload Identity ----------------------------------------------------------

resource "google_service_account_iam_member" "workload_identity" {
  for_each = local.workload_identity_bindings

  service_account_id = each.value.service_account_id
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.workload_identity_pool}[${var.kubernetes_namespace}/${each.value.kubernetes_sa}]"

  # The workload pool exists only once the cluster has Workload Identity enabled.
  depends_on = [google_container_cluster.primary]
}

# --- Bucket -------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "flow_runner" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.flow_runner.email}"
}

resource "google_storage_bucket_iam_member" "prefix" {
  for_each = local.prefix_grants

  bucket = google_storage_bucket.main.name
  role   = each.value.role
  member = each.value.member

  condition {
    title       = "${each.key}-prefixes"
    description = "Objects under ${join(", ", each.value.prefixes)} and bucket-level calls such as listing."
    expression = join(" || ", concat(
      [local.bucket_type_match],
      [for prefix in each.value.prefixes : "resource.name.startsWith(\"${local.bucket_resource}/objects/${prefix}\")"],
    ))
  }
}

# STS service agent: the sink permissions from the Storage Transfer Service
# documentation, limited to raw/. Legacy bucket roles cannot carry IAM
# Conditions, hence the custom role.
resource "google_project_iam_custom_role" "transfer_sink" {
  project     = var.project_id
  role_id     = "${local.role_id_prefix}_transfer_sink"
  title       = "${var.name_prefix} transfer sink"
  description = "Storage Transfer Service writes into raw/ of the ${var.name_prefix} bucket."
  permissions = [
    "storage.buckets.get",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
  ]
}

resource "google_storage_bucket_iam_member" "transfer_sink" {
  bucket = google_storage_bucket.main.name
  role   = google_project_iam_custom_role.transfer_sink.id
  member = "serviceAccount:${data.google_storage_transfer_project_service_account.main.email}"

  condition {
    title       = "raw-prefix"
    description = "Objects under raw/ and bucket-level calls."
    expression  = "${local.bucket_type_match} || resource.name.startsWith(\"${local.bucket_resource}/objects/raw/\")"
  }
}

# --- Storage Transfer Service ---------------------------------------------------

# The flow starts the existing job and polls its operation. It cannot create,
# change or delete jobs.
resource "google_project_iam_custom_role" "transfer_runner" {
  project     = var.project_id
  role_id     = "${local.role_id_prefix}_transfer_runner"
  title       = "${var.name_prefix} transfer runner"
  description = "Runs the ${var.name_prefix} transfer job and reads, lists or cancels its operations."
  permissions = [
    "storagetransfer.jobs.get",
    "storagetransfer.jobs.run",
    "storagetransfer.operations.cancel",
    "storagetransfer.operations.get",
    "storagetransfer.operations.list",
  ]
}

resource "google_project_iam_member" "flow_runner_transfer" {
  project = var.project_id
  role    = google_project_iam_custom_role.transfer_runner.id
  member  = "serviceAccount:${google_service_account.flow_runner.email}"
}

# --- Secrets --------------------------------------------------------------------

resource "google_secret_manager_secret_iam_member" "flow_runner" {
  for_each = toset(local.flow_runner_secret_keys)

  project   = var.project_id
  secret_id = google_secret_manager_secret.main[each.value].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.flow_runner.email}"
}

resource "google_secret_manager_secret_iam_member" "transfer_aws_source" {
  for_each = local.use_aws_role_arn ? toset([]) : toset(["aws_source_credentials"])

  project   = var.project_id
  secret_id = google_secret_manager_secret.main[each.value].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${data.google_storage_transfer_project_service_account.main.email}"
}
