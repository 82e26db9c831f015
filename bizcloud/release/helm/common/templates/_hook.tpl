{{- /*
The service's customize hook, as bizcloud/release/render.py applies it: each rendered object
goes through the merge patches (RFC 7386) that match its kind, name and group, in order; the
extra manifests follow, in the service's namespace and with its labels. JSON patches (RFC 6902)
have no Go-template form here: the export refuses a service that has them.
*/ -}}

{{- /* One object out: as rendered, or parsed and patched when any patch matches it. */ -}}
{{- define "bizcloud.emit" -}}
{{- $text := .text -}}
{{- $patches := .p.customize.patches -}}
{{- if $patches -}}
{{- $doc := fromYaml $text -}}
{{- $hit := false -}}
{{- range $patches -}}
{{- $labels := default dict $doc.metadata.labels -}}
{{- if and (eq $doc.kind .kind) (or (not (hasKey . "name")) (eq $doc.metadata.name .name))
           (or (not (hasKey . "group")) (eq (get $labels "bizcloud.io/group") .group)) -}}
{{- $doc = (include "bizcloud.mergePatch" (dict "target" $doc "patch" (fromJson .merge)) | fromJson).v -}}
{{- $hit = true -}}
{{- end -}}
{{- end }}
---
{{ if $hit }}{{ toJson $doc | replace "\u0085" "\\u0085" }}{{ else }}{{ $text }}{{ end }}
{{- else }}
---
{{ $text }}
{{- end }}
{{- end }}

{{- /* RFC 7386 of .patch onto .target, answered as {"v": result} in JSON (include answers text). */ -}}
{{- define "bizcloud.mergePatch" -}}
{{- if kindIs "map" .patch -}}
{{- $result := dict -}}
{{- if kindIs "map" .target }}{{ $result = deepCopy .target }}{{ end -}}
{{- range $key, $value := .patch -}}
{{- if kindIs "invalid" $value -}}
{{- $_ := unset $result $key -}}
{{- else -}}
{{- $merged := include "bizcloud.mergePatch" (dict "target" (get $result $key) "patch" $value) | fromJson -}}
{{- $_ := set $result $key $merged.v -}}
{{- end -}}
{{- end -}}
{{- dict "v" $result | toJson -}}
{{- else -}}
{{- dict "v" .patch | toJson -}}
{{- end -}}
{{- end }}

{{- define "bizcloud.manifests" -}}
{{- $p := . -}}
{{- range $p.customize.manifests }}
{{- $doc := fromJson . -}}
{{- $meta := $doc.metadata -}}
{{- if not (hasKey $meta "namespace") }}{{ $_ := set $meta "namespace" $p.namespace }}{{ end -}}
{{- $_ := set $meta "labels" (merge (deepCopy $p.labels) (default dict $meta.labels)) }}
---
{{ toJson $doc | replace "\u0085" "\\u0085" }}
{{- end }}
{{- end }}
