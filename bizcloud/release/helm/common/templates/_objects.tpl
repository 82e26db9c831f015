{{- /*
The objects every template set shares, as named templates over one service's values (the
exported values.yaml, or one item of a list in a chart that renders many). They mirror
bizcloud/release/templates/common/*.yaml.j2 object for object; every value goes through toJson,
as every Jinja2 value goes through tojson, so no value can break out of its field. Free text
also escapes NEL (U+0085), which Go's JSON leaves raw and YAML reads as a line break.
*/ -}}

{{- define "bizcloud.namespace" -}}
apiVersion: v1
kind: Namespace
metadata:
  name: {{ .namespace | toJson }}
  labels:
    bizcloud.io/env: {{ .env | toJson }}
{{- end }}

{{- define "bizcloud.files" -}}
{{- if .files }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ printf "%s-files" .service | toJson }}
  namespace: {{ .namespace | toJson }}
  labels: {{ .labels | toJson }}
data:
{{- range .files }}
  {{ .name | toJson }}: {{ .content | toJson | replace "\u0085" "\\u0085" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bizcloud.selector" -}}
app: {{ .p.service | toJson }}
bizcloud.io/service: {{ .p.service | toJson }}
bizcloud.io/env: {{ .p.env | toJson }}
bizcloud.io/group: {{ .w.group | toJson }}
{{- end }}

{{- define "bizcloud.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .w.name | toJson }}
  namespace: {{ .p.namespace | toJson }}
  labels: {{ .p.labels | toJson }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "bizcloud.selector" . | nindent 6 }}
{{- end }}

{{- /* The pod template both groups share; .p is the service, .w the workload. */ -}}
{{- define "bizcloud.pod" -}}
{{- $p := .p -}}
metadata:
  labels:
    app: {{ $p.service | toJson }}
    app.kubernetes.io/managed-by: bizcloud
    bizcloud.io/service: {{ $p.service | toJson }}
    bizcloud.io/env: {{ $p.env | toJson }}
    bizcloud.io/group: {{ .w.group | toJson }}
    bizcloud.io/release: {{ .w.release | toJson }}
  annotations:
    bizcloud.io/files-checksum: {{ $p.files_checksum | toJson }}
    {{- range $key, $value := $p.annotations }}
    {{ $key | toJson }}: {{ $value | toJson }}
    {{- end }}
spec:
  {{- with $p.readiness_gates }}
  readinessGates:
    {{- range . }}
    - conditionType: {{ . | toJson }}
    {{- end }}
  {{- end }}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 10
  containers:
    - name: {{ $p.service | toJson }}
      image: {{ .w.image | toJson }}
      imagePullPolicy: IfNotPresent
      {{- if $p.command }}
      command: {{ $p.command | toJson | replace "\u0085" "\\u0085" }}
      {{- end }}
      {{- if $p.args }}
      args: {{ $p.args | toJson | replace "\u0085" "\\u0085" }}
      {{- end }}
      {{- if $p.ports }}
      ports:
        {{- range $name, $port := $p.ports }}
        - name: {{ $name | toJson }}
          containerPort: {{ $port | toJson }}
          protocol: TCP
        {{- end }}
      {{- end }}
      env:
        {{- range $p.env_vars }}
        - name: {{ .name | toJson }}
          {{- if .field_path }}
          valueFrom: {fieldRef: {fieldPath: {{ .field_path | toJson }}}}
          {{- else if .secret }}
          valueFrom: {secretKeyRef: {name: {{ .secret.name | toJson }}, key: {{ .secret.key | toJson }}}}
          {{- else }}
          value: {{ .value | toJson | replace "\u0085" "\\u0085" }}
          {{- end }}
        {{- end }}
      {{- with $p.probe }}
      readinessProbe:
        {{- if .path }}
        httpGet: {path: {{ .path | toJson }}, port: {{ .port | toJson }}}
        {{- else }}
        tcpSocket: {port: {{ .port | toJson }}}
        {{- end }}
        periodSeconds: {{ .period_s | toJson }}
        failureThreshold: 1
      {{- end }}
      lifecycle:
        preStop:
          sleep: {seconds: 2}
      resources:
        requests: {cpu: {{ $p.cpu | toJson }}, memory: {{ $p.memory | toJson }}}
        limits: {memory: {{ $p.memory | toJson }}}
      {{- if $p.files }}
      volumeMounts:
        {{- range $p.files }}
        - {name: files, mountPath: {{ .mount | toJson }}, subPath: {{ .name | toJson }}, readOnly: true}
        {{- end }}
  volumes:
    - name: files
      configMap: {name: {{ printf "%s-files" $p.service | toJson }}}
  {{- end }}
{{- end }}

{{- /* The workload's own labels: the service's, and its group. */ -}}
{{- define "bizcloud.workloadLabels" -}}
{{- set (deepCopy .p.labels) "bizcloud.io/group" .w.group | toJson }}
{{- end }}

{{- /* Namespace and files, each through the hook. */ -}}
{{- define "bizcloud.commonHead" -}}
{{- include "bizcloud.emit" (dict "p" . "text" (include "bizcloud.namespace" .)) }}
{{- $files := include "bizcloud.files" . -}}
{{- if $files }}{{ include "bizcloud.emit" (dict "p" . "text" $files) }}{{ end }}
{{- end }}

{{- define "bizcloud.pdbs" -}}
{{- $p := . -}}
{{- range $p.workloads }}
{{- include "bizcloud.emit" (dict "p" $p "text" (include "bizcloud.pdb" (dict "p" $p "w" .))) }}
{{- end }}
{{- end }}
