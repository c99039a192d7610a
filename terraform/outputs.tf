output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = google_container_cluster.primary.name
}

output "cluster_location" {
  description = "Zone or region of the GKE cluster."
  value       = google_container_cluster.primary.location
}

output "cluster_endpoint" {
  description = "IP address of the cluster control plane."
  value       = google_container_cluster.primary.endpoint
  sensitive   = true
}

output "cluster_ca_certificate" {
  description = "Base64-encoded public CA certificate of the cluster control plane."
  value       = google_container_cluster.primary.master_auth[0].cluster_ca_certificate
  sensitive   = true
}

output "get_credentials_command" {
  description = "gcloud command that writes a kubeconfig entry for the cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.primary.name} --location ${google_container_cluster.primary.location} --project ${var.project_id}"
}

output "workload_identity_pool" {
  description = "Workload Identity pool of the cluster (PROJECT_ID.svc.id.goog)."
  value       = local.workload_identity_pool
}

output "bucket_name" {
  description = "Name of the working bucket with the raw/, temp/ and processed/ prefixes."
  value       = google_storage_bucket.main.name
}

output "bucket_url" {
  description = "gs:// URL of the working bucket."
  value       = google_storage_bucket.main.url
}

output "transfer_job_name" {
  description = "Resource name (transferJobs/...) of the Storage Transfer Service job that the flow runs, or null when create_transfer_job is false."
  value       = var.create_transfer_job ? google_storage_transfer_job.main[0].name : null
}

output "transfer_service_agent_email" {
  description = "Google-managed service account of Storage Transfer Service. With aws_source_role_arn, the AWS role's trust policy must accept this identity."
  value       = data.google_storage_transfer_project_service_account.main.email
}

output "transfer_service_agent_subject_id" {
  description = "Subject ID of the Storage Transfer Service agent, used as the accounts.google.com:sub condition in the AWS role's trust policy."
  value       = data.google_storage_transfer_project_service_account.main.subject_id
}

output "service_account_emails" {
  description = "Emails of the Google service accounts, keyed by flow_runner, dask and nodes."
  value = {
    flow_runner = google_service_account.flow_runner.email
    dask        = google_service_account.dask.email
    nodes       = google_service_account.nodes.email
  }
}

output "kubernetes_service_account_annotations" {
  description = "iam.gke.io/gcp-service-account annotation value for each Kubernetes service account in k8s/serviceaccounts.yaml, keyed by the Kubernetes service account name."
  value = {
    (var.kubernetes_service_accounts.flow_runner) = google_service_account.flow_runner.email
    (var.kubernetes_service_accounts.dask)        = google_service_account.dask.email
  }
}

output "artifact_registry_repository_url" {
  description = "Docker repository URL to tag and push the image to, e.g. <url>/lm-co2:0.1.0."
  value       = "${google_artifact_registry_repository.main.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.main.repository_id}"
}

output "secret_ids" {
  description = "Secret Manager secret IDs keyed by purpose. The secrets are created empty. Add values with `gcloud secrets versions add`."
  value       = { for key, secret in google_secret_manager_secret.main : key => secret.secret_id }
}

output "flow_environment" {
  description = "Environment variables that point the gke profile at these resources. Set them in the deployment's job_variables.env (docs/deploy.md). LMCO2_CREDENTIALS__AWS_SECRET names the secret, not its value."
  value = {
    LMCO2_STORAGE__INPUT          = "s3://${var.client_s3.input_bucket}/${var.client_s3.input_prefix}{yyyymmdd}/"
    LMCO2_STORAGE__RAW            = "${google_storage_bucket.main.url}/raw/{yyyymmdd}/"
    LMCO2_STORAGE__TEMP           = "${google_storage_bucket.main.url}/temp/{yyyymmdd}/"
    LMCO2_STORAGE__PROCESSED      = "${google_storage_bucket.main.url}/processed/{yyyymmdd}/"
    LMCO2_STORAGE__OUTPUT         = "s3://${var.client_s3.output_bucket}/${var.client_s3.output_prefix}{yyyymmdd}/"
    LMCO2_TRANSFER__PROJECT_ID    = var.project_id
    LMCO2_TRANSFER__JOB_NAME      = var.create_transfer_job ? google_storage_transfer_job.main[0].name : ""
    LMCO2_CREDENTIALS__AWS_SECRET = google_secret_manager_secret.main["aws_flow_credentials"].id
  }
}

output "run_events_metric_type" {
  description = "Metric type of the log-based metric that counts run_failed and run_completed events, or null when enable_monitoring is false."
  value       = var.enable_monitoring ? local.run_events_metric_type : null
}

output "alert_policy_names" {
  description = "Resource names of the failed-run and late-run alert policies, or an empty list when enable_monitoring is false."
  value       = concat(google_monitoring_alert_policy.run_failed[*].name, google_monitoring_alert_policy.run_late[*].name)
}
