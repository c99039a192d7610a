# VPC for private GKE nodes. Cloud NAT gives the nodes outbound internet access
# for the client S3 bucket, the Prefect API and public images. Google APIs are
# reached through Private Google Access.

locals {
  network_name    = coalesce(var.network.network_name, var.name_prefix)
  subnetwork_name = coalesce(var.network.subnetwork_name, var.name_prefix)

  network_self_link    = var.create_network ? google_compute_network.main[0].self_link : data.google_compute_network.existing[0].self_link
  subnetwork_self_link = var.create_network ? google_compute_subnetwork.main[0].self_link : data.google_compute_subnetwork.existing[0].self_link
}

resource "google_compute_network" "main" {
  count = var.create_network ? 1 : 0

  project                 = var.project_id
  name                    = local.network_name
  auto_create_subnetworks = false

  depends_on = [google_project_service.main]
}

resource "google_compute_subnetwork" "main" {
  count = var.create_network ? 1 : 0

  project                  = var.project_id
  name                     = local.subnetwork_name
  region                   = var.region
  network                  = google_compute_network.main[0].id
  ip_cidr_range            = var.network.subnetwork_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = var.network.pods_range_name
    ip_cidr_range = var.network.pods_cidr
  }

  secondary_ip_range {
    range_name    = var.network.services_range_name
    ip_cidr_range = var.network.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Explicit lowest-priority deny with logging. GKE adds its own allow rules for
# control plane and node traffic at higher priority.
resource "google_compute_firewall" "deny_all_ingress" {
  count = var.create_network ? 1 : 0

  project   = var.project_id
  name      = "${var.name_prefix}-deny-all-ingress"
  network   = google_compute_network.main[0].id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "main" {
  count = var.create_network ? 1 : 0

  project = var.project_id
  name    = "${var.name_prefix}-router"
  region  = var.region
  network = google_compute_network.main[0].id
}

resource "google_compute_router_nat" "main" {
  count = var.create_network ? 1 : 0

  project                            = var.project_id
  name                               = "${var.name_prefix}-nat"
  router                             = google_compute_router.main[0].name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

data "google_compute_network" "existing" {
  count = var.create_network ? 0 : 1

  project = var.project_id
  name    = local.network_name
}

data "google_compute_subnetwork" "existing" {
  count = var.create_network ? 0 : 1

  project = var.project_id
  name    = local.subnetwork_name
  region  = var.region
}
