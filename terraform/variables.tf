# -----------------------------------------------------------------------------
# Project
# -----------------------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "ID of the GCP project that holds every resource of this module. Required."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project_id must be 6 to 30 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "region" {
  type        = string
  description = "Region for the bucket, the registry, the secrets replicas and the subnetwork, for example asia-northeast1."
  default     = "asia-northeast1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "The region must be a GCP region name such as asia-northeast1, not a zone."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name. Changing it recreates nearly every resource, including the cluster and the bucket."
  default     = "lm-co2"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 3 to 20 lowercase letters, digits or hyphens and start with a letter."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels added to every resource that supports labels. The keys app and managed-by are set by the module."
  default     = {}
}

variable "enable_project_services" {
  type        = bool
  description = "Whether to enable the required Google APIs in the project. Set to false when another team manages the project's APIs."
  default     = true
}

# -----------------------------------------------------------------------------
# Network
# -----------------------------------------------------------------------------

variable "create_network" {
  type        = bool
  description = "Whether to create a VPC, a subnetwork and a Cloud NAT. When false, network.network_name and network.subnetwork_name must name existing resources with the two secondary ranges."
  default     = true
}

variable "network" {
  type = object({
    network_name        = optional(string)
    subnetwork_name     = optional(string)
    subnetwork_cidr     = optional(string, "10.10.0.0/20")
    pods_cidr           = optional(string, "10.20.0.0/14")
    services_cidr       = optional(string, "10.24.0.0/20")
    pods_range_name     = optional(string, "pods")
    services_range_name = optional(string, "services")
  })
  description = "VPC settings. Names default to name_prefix. The CIDR values are used only when create_network is true; changing them recreates the subnetwork and the cluster."
  default     = {}

  validation {
    condition = alltrue([
      for cidr in [var.network.subnetwork_cidr, var.network.pods_cidr, var.network.services_cidr] : can(cidrhost(cidr, 0))
    ])
    error_message = "The subnetwork_cidr, pods_cidr and services_cidr values must be valid IPv4 CIDR blocks."
  }
}

# -----------------------------------------------------------------------------
# GKE
# -----------------------------------------------------------------------------

variable "cluster" {
  type = object({
    name                    = optional(string)
    location                = optional(string)
    release_channel         = optional(string, "REGULAR")
    master_ipv4_cidr_block  = optional(string, "172.16.0.0/28")
    enable_private_endpoint = optional(bool, false)
    master_authorized_networks = optional(list(object({
      cidr_block   = string
      display_name = string
    })), [])
    deletion_protection = optional(bool, true)
    maintenance_window = optional(object({
      start_time = string
      end_time   = string
      recurrence = string
      }), {
      start_time = "2026-01-03T15:00:00Z"
      end_time   = "2026-01-03T21:00:00Z"
      recurrence = "FREQ=WEEKLY;BYDAY=SA,SU"
    })
  })
  description = <<-EOT
    GKE Standard cluster settings. name defaults to name_prefix. location defaults
    to the zone "<region>-a" (a zonal cluster); a region gives a regional cluster
    whose node pools run in three zones, which triples the node counts. Changing
    name, location or master_ipv4_cidr_block recreates the cluster. The
    NetworkPolicy in k8s/networkpolicy.yaml allows API server traffic to
    master_ipv4_cidr_block, so keep the two equal. master_authorized_networks
    lists the CIDR blocks allowed to reach the public control plane endpoint
    (kubectl, helm); an empty list allows none.
  EOT
  default     = {}

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE", "EXTENDED"], var.cluster.release_channel)
    error_message = "The cluster.release_channel must be one of RAPID, REGULAR, STABLE or EXTENDED."
  }

  validation {
    condition     = can(cidrhost(var.cluster.master_ipv4_cidr_block, 0)) && endswith(var.cluster.master_ipv4_cidr_block, "/28")
    error_message = "The cluster.master_ipv4_cidr_block must be a /28 IPv4 CIDR block, as GKE requires for the control plane range."
  }

  validation {
    condition     = alltrue([for network in var.cluster.master_authorized_networks : can(cidrhost(network.cidr_block, 0))])
    error_message = "Every cluster.master_authorized_networks[*].cidr_block must be a valid IPv4 CIDR block."
  }
}

variable "system_node_pool" {
  type = object({
    machine_type   = optional(string, "e2-standard-4")
    min_node_count = optional(number, 1)
    max_node_count = optional(number, 3)
    disk_size_gb   = optional(number, 50)
  })
  description = "On-demand node pool for the Prefect worker, the flow-run pods, the Dask schedulers and the Dask operator. Node counts are per zone. Changing machine_type or disk_size_gb recreates the pool."
  default     = {}

  validation {
    condition     = var.system_node_pool.min_node_count >= 1 && var.system_node_pool.max_node_count >= var.system_node_pool.min_node_count
    error_message = "The system_node_pool needs min_node_count of at least 1 and max_node_count not below min_node_count, because the scheduler must never run on Spot capacity."
  }
}

variable "dask_node_pool" {
  type = object({
    machine_type   = optional(string, "n2-highmem-4")
    min_node_count = optional(number, 0)
    max_node_count = optional(number, 16)
    disk_size_gb   = optional(number, 100)
    disk_type      = optional(string, "pd-balanced")
  })
  description = "Spot node pool for Dask workers, autoscaled from min_node_count (0 by default) per zone. One worker fills one node: the default machine type matches the worker requests in k8s/daskcluster.yaml (3 vCPU, 20 GiB), and max_node_count matches cluster.max_workers of the gke profile (16). Change them together with the ResourceQuota in k8s/quota.yaml. Changing machine_type, disk_size_gb or disk_type recreates the pool."
  default     = {}

  validation {
    condition     = var.dask_node_pool.min_node_count >= 0 && var.dask_node_pool.max_node_count >= max(1, var.dask_node_pool.min_node_count)
    error_message = "The dask_node_pool needs min_node_count of 0 or more and max_node_count of at least 1 and not below min_node_count."
  }
}

variable "enable_binary_authorization" {
  type        = bool
  description = "Whether the cluster enforces the project's Binary Authorization policy. The default project policy allows every image until an operator restricts it."
  default     = true
}

variable "kubernetes_namespace" {
  type        = string
  description = "Namespace of the Prefect worker, the flow-run pods and the Dask clusters. Must match k8s/namespace.yaml."
  default     = "lm-co2"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "The kubernetes_namespace must be a DNS-1123 label: lowercase letters, digits and hyphens, at most 63 characters."
  }
}

variable "kubernetes_service_accounts" {
  type = object({
    flow_runner = optional(string, "lm-co2-flow-runner")
    dask        = optional(string, "lm-co2-dask")
  })
  description = "Names of the Kubernetes service accounts bound to the Google service accounts through Workload Identity. Must match k8s/serviceaccounts.yaml."
  default     = {}
}

# -----------------------------------------------------------------------------
# Storage and transfer
# -----------------------------------------------------------------------------

variable "bucket" {
  type = object({
    name                              = optional(string)
    location                          = optional(string)
    storage_class                     = optional(string, "STANDARD")
    raw_retention_days                = optional(number, 30)
    temp_retention_days               = optional(number, 7)
    processed_retention_days          = optional(number)
    noncurrent_version_retention_days = optional(number, 7)
    force_destroy                     = optional(bool, false)
  })
  description = <<-EOT
    Working bucket with the prefixes raw/ (copied from the client by Storage
    Transfer Service), temp/ (Dask intermediates) and processed/ (results).
    name defaults to "<project_id>-<name_prefix>" and location to the region.
    Objects under raw/ and temp/ are deleted after the given number of days;
    processed/ is kept unless processed_retention_days is set. Overwritten or
    deleted objects stay as noncurrent versions for
    noncurrent_version_retention_days. force_destroy = true lets
    `terraform destroy` delete a non-empty bucket. Changing name or location
    recreates the bucket and loses its data.
  EOT
  default     = {}

  validation {
    condition = alltrue([
      var.bucket.raw_retention_days >= 1,
      var.bucket.temp_retention_days >= 1,
      var.bucket.noncurrent_version_retention_days >= 1,
      var.bucket.processed_retention_days == null ? true : var.bucket.processed_retention_days >= 1,
    ])
    error_message = "Every bucket retention value must be at least 1 day; leave processed_retention_days unset to keep results."
  }

  validation {
    condition     = contains(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], var.bucket.storage_class)
    error_message = "The bucket.storage_class must be one of STANDARD, NEARLINE, COLDLINE or ARCHIVE."
  }
}

variable "client_s3" {
  type = object({
    input_bucket  = string
    input_prefix  = optional(string, "input/")
    output_bucket = string
    output_prefix = optional(string, "output/")
    region        = optional(string, "ap-northeast-1")
  })
  description = "The client's S3 buckets. Storage Transfer Service copies input_bucket/input_prefix to raw/ in our bucket, and the flow itself writes results to output_bucket/output_prefix. Required."

  validation {
    condition = alltrue([
      for name in [var.client_s3.input_bucket, var.client_s3.output_bucket] : can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", name))
    ])
    error_message = "The client_s3 bucket names must be valid S3 bucket names: 3 to 63 lowercase letters, digits, dots or hyphens."
  }

  validation {
    condition = alltrue([
      for prefix in [var.client_s3.input_prefix, var.client_s3.output_prefix] : endswith(prefix, "/") && !startswith(prefix, "/")
    ])
    error_message = "The client_s3 prefixes must end with \"/\" and must not start with \"/\", for example \"input/\"."
  }
}

variable "create_transfer_job" {
  type        = bool
  description = "Whether to create the Storage Transfer Service job that copies the client's input prefix to raw/. The job has no schedule: the daily flow starts it."
  default     = true
}

variable "aws_source_role_arn" {
  type        = string
  description = "ARN of an AWS IAM role that Storage Transfer Service assumes with AssumeRoleWithWebIdentity to read the client's input bucket. Leave null to use an access key stored in the Secret Manager secret <name_prefix>-aws-source-credentials instead."
  default     = null

  validation {
    condition     = var.aws_source_role_arn == null ? true : can(regex("^arn:aws:iam::[0-9]{12}:role/.+$", var.aws_source_role_arn))
    error_message = "The aws_source_role_arn must look like arn:aws:iam::123456789012:role/NAME, or be null."
  }
}

variable "transfer" {
  type = object({
    max_object_age_days = optional(number, 7)
    overwrite_when      = optional(string, "DIFFERENT")
  })
  description = "Storage Transfer Service options. Only source objects modified within max_object_age_days are copied, so that objects already expired from raw/ are not copied again. It must be smaller than bucket.raw_retention_days. Older run dates need a one-off transfer (see docs/deploy.md)."
  default     = {}

  validation {
    condition     = var.transfer.max_object_age_days >= 1
    error_message = "The transfer.max_object_age_days must be at least 1."
  }

  validation {
    condition     = contains(["DIFFERENT", "NEVER", "ALWAYS"], var.transfer.overwrite_when)
    error_message = "The transfer.overwrite_when must be one of DIFFERENT, NEVER or ALWAYS."
  }
}

# -----------------------------------------------------------------------------
# Registry
# -----------------------------------------------------------------------------

variable "artifact_registry" {
  type = object({
    repository_id         = optional(string, "lm-co2")
    keep_recent_versions  = optional(number, 10)
    untagged_max_age_days = optional(number, 30)
  })
  description = "Docker repository for the lm-co2 image. Tags are immutable. The cleanup policy keeps the keep_recent_versions newest versions and deletes untagged images older than untagged_max_age_days."
  default     = {}

  validation {
    condition     = var.artifact_registry.keep_recent_versions >= 1 && var.artifact_registry.untagged_max_age_days >= 1
    error_message = "The artifact_registry.keep_recent_versions and untagged_max_age_days values must be at least 1."
  }
}

# -----------------------------------------------------------------------------
# Monitoring
# -----------------------------------------------------------------------------

variable "enable_monitoring" {
  type        = bool
  description = "Whether to create the log-based metric and the alert policies for failed and late daily runs."
  default     = true
}

variable "alert_notification_channel_ids" {
  type        = list(string)
  description = "IDs of existing Cloud Monitoring notification channels (projects/PROJECT/notificationChannels/ID) that receive the alerts. An empty list creates the policies without notifications."
  default     = []

  validation {
    condition     = alltrue([for id in var.alert_notification_channel_ids : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", id))])
    error_message = "Each alert_notification_channel_ids entry must look like projects/PROJECT/notificationChannels/123."
  }
}

variable "run_late_after_hours" {
  type        = number
  description = "The late-run alert fires when no run_completed event was logged in this many hours. Use the schedule period plus the longest expected run time, for example 26 for a daily run."
  default     = 26

  validation {
    condition     = var.run_late_after_hours >= 2 && var.run_late_after_hours <= 168
    error_message = "The run_late_after_hours must be between 2 and 168."
  }
}
