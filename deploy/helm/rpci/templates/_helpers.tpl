{{/* Chart name, truncated to a DNS label. */}}
{{- define "rpci.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; component names are "<fullname>-<component>". */}}
{{- define "rpci.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "rpci.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "rpci.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "rpci.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: rpci
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "agent"). */}}
{{- define "rpci.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rpci.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Name of a component's objects (Deployment, ServiceAccount ...). */}}
{{- define "rpci.componentName" -}}
{{- printf "%s-%s" (include "rpci.fullname" .root) .component -}}
{{- end -}}

{{/* Image reference of a component; call with (dict "root" $ "values" .Values.agent). */}}
{{- define "rpci.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .values.image.repository (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* Prometheus scrape annotations for a pod serving /metrics on `port`. */}}
{{- define "rpci.scrapeAnnotations" -}}
{{- if .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* The controller's gRPC address for agents and plugins. */}}
{{- define "rpci.controllerAddress" -}}
{{- printf "%s-controller.%s.svc:%v" (include "rpci.fullname" .) .Release.Namespace .Values.controller.grpcPort -}}
{{- end -}}

{{/* Secret with the CA certificate and key (tls.crt, tls.key). */}}
{{- define "rpci.caSecret" -}}
{{- printf "%s-ca" (include "rpci.fullname" .) -}}
{{- end -}}

{{/* Secret with the controller's certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "rpci.controllerTlsSecret" -}}
{{- printf "%s-controller-tls" (include "rpci.fullname" .) -}}
{{- end -}}

{{/* ConfigMap the controller keeps the CA certificate in (ca.crt only). */}}
{{- define "rpci.caBundle" -}}
{{- printf "%s-ca-bundle" (include "rpci.fullname" .) -}}
{{- end -}}

{{/* The controller's NodeIdentity address, where nodes get certificates. */}}
{{- define "rpci.identityAddress" -}}
{{- printf "%s-controller.%s.svc:%v" (include "rpci.fullname" .) .Release.Namespace .Values.controller.identityPort -}}
{{- end -}}

{{/*
TLS flags of an agent or plugin: a short-lived "<role>:<node>" certificate
from the controller, asked for with the pod's projected ServiceAccount token
(audience rpci) and renewed before expiry; or --insecure. Nodes never see
the CA key.
*/}}
{{- define "rpci.nodeTlsArgs" -}}
{{- if eq .Values.tls.mode "insecure" }}
- --insecure
{{- else }}
- --tls-ca=/etc/rpci/ca/ca.crt
- --identity-address={{ include "rpci.identityAddress" . }}
- --token-file=/var/run/secrets/rpci/token
- --cert-dir=/run/rpci/tls
{{- end }}
{{- end -}}

{{- define "rpci.nodeTlsMounts" -}}
{{- if ne .Values.tls.mode "insecure" }}
- {name: ca, mountPath: /etc/rpci/ca, readOnly: true}
- {name: token, mountPath: /var/run/secrets/rpci, readOnly: true}
- {name: tls, mountPath: /run/rpci/tls}
{{- end }}
{{- end -}}

{{- define "rpci.nodeTlsVolumes" -}}
{{- if ne .Values.tls.mode "insecure" }}
- name: ca
  configMap:
    name: {{ include "rpci.caBundle" . }}
- name: token
  projected:
    sources:
      - serviceAccountToken:
          audience: rpci
          expirationSeconds: {{ .Values.tls.tokenExpirationSeconds }}
          path: token
- name: tls
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
{{- end }}
{{- end -}}
