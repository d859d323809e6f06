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

{{/*
Init container that issues this node's "<role>:<node>" certificate from the
CA (files/issue-node-cert.sh) into the "tls" emptyDir; call with
(dict "root" $ "values" .Values.agent "role" "agent" "user" 0).
*/}}
{{- define "rpci.issueCertInitContainer" -}}
- name: issue-cert
  image: {{ include "rpci.image" (dict "root" .root "values" .values) }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["/bin/sh", "/etc/rpci/scripts/issue-node-cert.sh", {{ .role | quote }}]
  env:
    - name: NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: HOST_IP
      valueFrom: {fieldRef: {fieldPath: status.hostIP}}
    - name: CA_DIR
      value: /etc/rpci/ca
    - name: OUT_DIR
      value: /etc/rpci/tls
    - name: CERT_DAYS
      value: {{ .root.Values.tls.certDays | quote }}
  # Same user as the component, which reads the 0600 key written here;
  # no capabilities.
  securityContext:
    runAsUser: {{ .user }}
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
  volumeMounts:
    - {name: ca, mountPath: /etc/rpci/ca, readOnly: true}
    - {name: tls, mountPath: /etc/rpci/tls}
    - {name: scripts, mountPath: /etc/rpci/scripts, readOnly: true}
{{- end -}}

{{/* Volumes the issue-cert init container needs. */}}
{{- define "rpci.issueCertVolumes" -}}
- name: ca
  secret:
    secretName: {{ include "rpci.caSecret" . }}
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
- name: tls
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
- name: scripts
  configMap:
    name: {{ include "rpci.fullname" . }}-scripts
{{- end -}}
