{{/*
Chart name, cut to 63 characters because it ends up in label values.
*/}}
{{- define "visionfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name prefix of every object. Cut to 52 characters so that the operator
Service, "<fullname>-operator", stays within the 63 characters of a DNS
label.
*/}}
{{- define "visionfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "visionfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object: the standard app.kubernetes.io set plus
commonLabels. Call with (dict "context" $ "component" "operator").
*/}}
{{- define "visionfleet.labels" -}}
helm.sh/chart: {{ include "visionfleet.chart" .context }}
{{ include "visionfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/part-of: visionfleet
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select the pods of one component; never change them in an
upgrade, because a Deployment's selector is immutable.
*/}}
{{- define "visionfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "visionfleet.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "visionfleet.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "visionfleet.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the agent ServiceAccount, the same in every agent namespace.
*/}}
{{- define "visionfleet.agentServiceAccountName" -}}
{{- default (printf "%s-agent" (include "visionfleet.fullname" .)) .Values.agent.serviceAccount.name }}
{{- end }}

{{/*
Namespaces where agents run, as a JSON list: agent.namespaces, or the
release namespace when that is empty. Use with fromJsonArray.
*/}}
{{- define "visionfleet.agentNamespaces" -}}
{{- if .Values.agent.namespaces }}
{{- .Values.agent.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
Image reference from an image value (repository, tag, digest), with the
chart's appVersion as the default tag. Call with (dict "image" .Values.x.image "context" $).
*/}}
{{- define "visionfleet.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .context.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
True when the cluster (or `helm template --api-versions`) serves the
Prometheus Operator API.
*/}}
{{- define "visionfleet.hasMonitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}
