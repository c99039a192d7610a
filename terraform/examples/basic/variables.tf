variable "project_id" {
  type        = string
  description = "ID of the GCP project to deploy into. Required."
}

variable "region" {
  type        = string
  description = "Region of the deployment."
  default     = "asia-northeast1"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name."
  default     = "lm-co2"
}

variable "environment" {
  type        = string
  description = "Value of the environment label on every resource, for example prod or staging."
  default     = "prod"
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "CIDR blocks allowed to reach the GKE control plane (operator workstations, CI runners)."
  default     = []
}

variable "client_s3" {
  type = object({
    input_bucket  = string
    input_prefix  = optional(string, "input/")
    output_bucket = string
    output_prefix = optional(string, "output/")
    region        = optional(string, "ap-northeast-1")
  })
  description = "The client's S3 input and output buckets. Required."
}

variable "aws_source_role_arn" {
  type        = string
  description = "AWS role that Storage Transfer Service assumes to read the input bucket. Null uses the access key secret instead."
  default     = null
}

variable "alert_notification_channel_ids" {
  type        = list(string)
  description = "Existing Cloud Monitoring notification channel IDs for the run alerts."
  default     = []
}
