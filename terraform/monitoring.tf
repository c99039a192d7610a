# Alerts on the daily run, driven by the JSON log lines that the flow writes to
# stdout: {"event": "run_failed" | "run_completed", "run_date": ..., "flow_run_id": ..., "phase": ...}.
# GKE sends JSON stdout lines to Cloud Logging as jsonPayload.

locals {
  run_events_metric_name = replace("${var.name_prefix}_run_events", "-", "_")
  run_events_metric_type = "logging.googleapis.com/user/${local.run_events_metric_name}"

  run_events_log_filter = join(" AND ", [
    "resource.type=\"k8s_container\"",
    "resource.labels.cluster_name=\"${local.cluster_name}\"",
    "resource.labels.namespace_name=\"${var.kubernetes_namespace}\"",
    "jsonPayload.event=(\"run_failed\" OR \"run_completed\")",
  ])
}

resource "google_logging_metric" "run_events" {
  count = var.enable_monitoring ? 1 : 0

  project     = var.project_id
  name        = local.run_events_metric_name
  description = "Count of daily-run end events of ${var.name_prefix}, by event and phase."
  filter      = local.run_events_log_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "event"
      value_type  = "STRING"
      description = "run_failed or run_completed."
    }

    labels {
      key         = "phase"
      value_type  = "STRING"
      description = "Phase of the flow that logged the event."
    }
  }

  # run_date and flow_run_id stay out of the labels: one new value per day would
  # grow the number of time series without bound.
  label_extractors = {
    event = "EXTRACT(jsonPayload.event)"
    phase = "EXTRACT(jsonPayload.phase)"
  }

  depends_on = [google_project_service.main]
}

resource "google_monitoring_alert_policy" "run_failed" {
  count = var.enable_monitoring ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name_prefix}: daily run failed"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channel_ids
  user_labels           = local.labels

  conditions {
    display_name = "run_failed event logged"

    condition_threshold {
      filter          = "metric.type=\"${local.run_events_metric_type}\" AND metric.label.event=\"run_failed\" AND resource.type=\"k8s_container\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.phase"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The ${var.name_prefix} daily flow logged `run_failed` (phase: `$${metric.label.phase}`).
      Find the run with this Logging query, then read `run_date` and `flow_run_id`:

      ${local.run_events_log_filter} AND jsonPayload.event="run_failed"

      docs/deploy.md describes how to rerun a run date.
    EOT
  }

  depends_on = [google_logging_metric.run_events]
}

resource "google_monitoring_alert_policy" "run_late" {
  count = var.enable_monitoring ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name_prefix}: daily run late"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.alert_notification_channel_ids
  user_labels           = local.labels

  # A metric-absence condition cannot look back more than 23.5 hours, which is
  # shorter than the gap between two daily completions, so the check is a PromQL
  # query over run_late_after_hours instead. The query also fires after a fresh
  # install until the first run completes.
  # NOTE: the PromQL name of a log-based metric (logging_googleapis_com:user_<name>)
  # follows the Cloud Monitoring mapping rules and was not checked against the API.
  conditions {
    display_name = "no run_completed event in ${var.run_late_after_hours} h"

    condition_prometheus_query_language {
      query               = "absent_over_time(logging_googleapis_com:user_${local.run_events_metric_name}{monitored_resource=\"k8s_container\",event=\"run_completed\"}[${var.run_late_after_hours}h])"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      No `run_completed` event from the ${var.name_prefix} daily flow in the last ${var.run_late_after_hours} hours.
      Check the Prefect UI for a late, crashed or still running run of the deployment `co2-daily/daily`,
      and the worker pod with `kubectl -n ${var.kubernetes_namespace} logs deploy/prefect-worker`.
    EOT
  }

  depends_on = [google_logging_metric.run_events]
}
