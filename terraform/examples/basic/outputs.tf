output "get_credentials_command" {
  description = "gcloud command that writes a kubeconfig entry for the cluster."
  value       = module.lm_co2.get_credentials_command
}

output "bucket_name" {
  description = "Name of the working bucket."
  value       = module.lm_co2.bucket_name
}

output "transfer_job_name" {
  description = "Storage Transfer Service job name for the flow settings."
  value       = module.lm_co2.transfer_job_name
}

output "transfer_service_agent_email" {
  description = "Storage Transfer Service agent to trust in the AWS role, when a role ARN is used."
  value       = module.lm_co2.transfer_service_agent_email
}

output "transfer_service_agent_subject_id" {
  description = "Subject ID of the Storage Transfer Service agent for the AWS trust policy."
  value       = module.lm_co2.transfer_service_agent_subject_id
}

output "kubernetes_service_account_annotations" {
  description = "Workload Identity annotation values for k8s/serviceaccounts.yaml."
  value       = module.lm_co2.kubernetes_service_account_annotations
}

output "artifact_registry_repository_url" {
  description = "Docker repository URL for `docker tag` and `docker push`."
  value       = module.lm_co2.artifact_registry_repository_url
}

output "secret_ids" {
  description = "Secret Manager secret IDs to fill with `gcloud secrets versions add`."
  value       = module.lm_co2.secret_ids
}

output "cluster_endpoint" {
  description = "IP address of the cluster control plane."
  value       = module.lm_co2.cluster_endpoint
  sensitive   = true
}
