{{/* The chart's name, overridable. */}}
{{- define "wco.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects: the release name alone when it already contains the chart's
name, "<release>-<chart>" otherwise. Cluster-scoped objects carry it too, so two releases of the
same name in different namespaces collide on purpose: two cluster-wide operators must not run.
*/}}
{{- define "wco.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "wco.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "wco.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wco.labels" -}}
helm.sh/chart: {{ include "wco.chart" . }}
{{ include "wco.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "wco.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wco.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "wco.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs in every namespace it watches, for a ClusterRole or a Role.
Secrets and ConfigMaps: read only (the operator watches them by metadata and reads the data of
the ones a resource refers to). Workloads: patch only, for the restart annotation. Pods: read,
and the eviction subresource for the Evict restart method.
*/}}
{{- define "wco.watchRules" -}}
- apiGroups: ["webhookca.io"]
  resources: ["webhookcacertificates"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["webhookca.io"]
  resources: ["webhookcacertificates/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["webhookca.io"]
  resources: ["webhookcacertificates/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The namespaces watched, as a JSON list (empty: every namespace): watchNamespaces, or the
deprecated watchNamespace as a list of one.
*/}}
{{- define "wco.watchNamespaces" -}}
{{- if and .Values.watchNamespace .Values.watchNamespaces }}
{{- fail "watchNamespace is deprecated: list that namespace in watchNamespaces instead of setting both" }}
{{- end }}
{{- if .Values.watchNamespace }}
{{- list .Values.watchNamespace | toJson }}
{{- else }}
{{- .Values.watchNamespaces | default list | toJson }}
{{- end }}
{{- end }}
