# GKE Standard cluster with private nodes and Workload Identity, an on-demand
# system pool and a Spot pool for Dask workers that scales from zero.

locals {
  # Node labels and the taint that k8s/daskcluster.yaml and the Prefect base job
  # template select on. Keep the keys and values in sync with those files.
  node_pool_label_key = "lm-co2/node-pool"
  dask_spot_taint_key = "lm-co2/dask-spot"
}

resource "google_container_cluster" "primary" {
  #checkov:skip=CKV_GCP_12:Dataplane V2 (datapath_provider ADVANCED_DATAPATH) enforces NetworkPolicy, and the legacy Calico network_policy block cannot be combined with it.
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Google Workspace domain that the project may not have. RBAC is bound to Kubernetes service accounts in k8s/rbac.yaml.
  #checkov:skip=CKV_GCP_24:PodSecurityPolicy was removed in Kubernetes 1.25. The namespace uses Pod Security Admission labels in k8s/namespace.yaml instead.
  project  = var.project_id
  name     = local.cluster_name
  location = local.cluster_location

  network    = local.network_self_link
  subnetwork = local.subnetwork_self_link

  # The node pools are separate resources below. The default pool exists only while the cluster is created.
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = var.cluster.deletion_protection

  networking_mode             = "VPC_NATIVE"
  datapath_provider           = "ADVANCED_DATAPATH"
  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  resource_labels             = local.labels

  release_channel {
    channel = var.cluster.release_channel
  }

  workload_identity_config {
    workload_pool = local.workload_identity_pool
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = var.network.pods_range_name
    services_secondary_range_name = var.network.services_range_name
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = var.cluster.enable_private_endpoint
    master_ipv4_cidr_block  = var.cluster.master_ipv4_cidr_block
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.cluster.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  binary_authorization {
    evaluation_mode = var.enable_binary_authorization ? "PROJECT_SINGLETON_POLICY_ENFORCE" : "DISABLED"
  }

  cluster_autoscaling {
    # Removes idle Spot nodes sooner than the default profile once a run ends.
    autoscaling_profile = "OPTIMIZE_UTILIZATION"
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }

  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
  }

  cost_management_config {
    enabled = true
  }

  maintenance_policy {
    recurring_window {
      start_time = var.cluster.maintenance_window.start_time
      end_time   = var.cluster.maintenance_window.end_time
      recurrence = var.cluster.maintenance_window.recurrence
    }
  }

  # Applies to the temporary default pool only. The managed pools set the same values.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    image_type      = "COS_CONTAINERD"

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    ignore_changes = [node_config, initial_node_count]
  }

  depends_on = [google_project_service.main]
}

resource "google_container_node_pool" "system" {
  project  = var.project_id
  name     = "system"
  cluster  = google_container_cluster.primary.id
  location = local.cluster_location

  autoscaling {
    min_node_count = var.system_node_pool.min_node_count
    max_node_count = var.system_node_pool.max_node_count
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  upgrade_settings {
    max_surge       = 1
    max_unavailable = 0
  }

  node_config {
    machine_type    = var.system_node_pool.machine_type
    disk_size_gb    = var.system_node_pool.disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    resource_labels = local.labels
    tags            = ["${var.name_prefix}-node"]

    labels = {
      (local.node_pool_label_key) = "system"
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

resource "google_container_node_pool" "dask_spot" {
  project  = var.project_id
  name     = "dask-spot"
  cluster  = google_container_cluster.primary.id
  location = local.cluster_location

  initial_node_count = var.dask_node_pool.min_node_count

  autoscaling {
    min_node_count = var.dask_node_pool.min_node_count
    max_node_count = var.dask_node_pool.max_node_count
    # Spot capacity varies by zone, so ANY lets the autoscaler use whichever zone has it.
    location_policy = "ANY"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    spot            = true
    machine_type    = var.dask_node_pool.machine_type
    disk_size_gb    = var.dask_node_pool.disk_size_gb
    disk_type       = var.dask_node_pool.disk_type
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    resource_labels = local.labels
    tags            = ["${var.name_prefix}-node"]

    labels = {
      (local.node_pool_label_key) = "dask-spot"
    }

    # Keeps everything except Dask workers off the Spot nodes.
    taint {
      key    = local.dask_spot_taint_key
      value  = "true"
      effect = "NO_SCHEDULE"
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    ignore_changes = [initial_node_count]
  }
}
