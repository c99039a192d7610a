# Artifact Registry repository for the single lm-co2 image used by the flow-run
# pod, the Dask scheduler and the Dask workers.

resource "google_artifact_registry_repository" "main" {
  #checkov:skip=CKV_GCP_84:Images contain code only and no client data, so Google-managed encryption is accepted for them.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_registry.repository_id
  description   = "Container images of ${var.name_prefix}."
  format        = "DOCKER"
  labels        = local.labels

  # Deployments pin a tag. Immutable tags guarantee that the tag always names the
  # same image, which the Kubernetes manifests rely on (imagePullPolicy IfNotPresent).
  docker_config {
    immutable_tags = true
  }

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent-versions"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.artifact_registry.keep_recent_versions
    }
  }

  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "${var.artifact_registry.untagged_max_age_days * 86400}s"
    }
  }

  depends_on = [google_project_service.main]
}
