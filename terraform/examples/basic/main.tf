# Root module that deploys lm-co2 into one project with the module defaults.

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    environment = var.environment
  }
}

module "lm_co2" {
  source = "../.."

  project_id  = var.project_id
  region      = var.region
  name_prefix = var.name_prefix

  cluster = {
    master_authorized_networks = var.master_authorized_networks
  }

  client_s3           = var.client_s3
  aws_source_role_arn = var.aws_source_role_arn

  alert_notification_channel_ids = var.alert_notification_channel_ids
}
