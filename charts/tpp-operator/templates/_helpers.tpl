{{- define "tpp-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- /*
Name of the cluster-scoped objects (ClusterRoles and their bindings): qualified by the release
namespace, so that teams installing a release of the same name in their own namespaces do not
collide.
*/ -}}
{{- define "tpp-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "tpp-operator.fullname" .) -}}
{{- end -}}

{{- define "tpp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tpp-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.create=false needs serviceAccount.name: the existing ServiceAccount the operator runs as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tpp-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tpp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* The image reference: repository@digest, else repository:tag (tag defaults to appVersion). */ -}}
{{- define "tpp-operator.image" -}}
{{- $repo := required "image.repository is required: no tpp-operator image is published. Build one with scripts/image.sh, push it to a registry your cluster can pull from, and pass --set image.repository=<registry>/tpp-operator (and image.tag or image.digest)" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- /*
Checks of the values that the schema cannot express. Included by rbac.yaml and deployment.yaml.
*/ -}}
{{- define "tpp-operator.validate" -}}
{{- if and .Values.clusterWide .Values.watchNamespaces -}}
{{- fail "set either watchNamespaces (the operator watches only those namespaces) or clusterWide=true (all namespaces), not both" -}}
{{- end -}}
{{- if not (or .Values.clusterWide .Values.watchNamespaces) -}}
{{- fail "choose the operator's scope: list the namespaces it may watch with --set watchNamespaces={team-a,team-b} (recommended: a Role per namespace, nothing cluster-wide), or set clusterWide=true to watch every namespace through a ClusterRole (read access to all Secrets of the cluster)" -}}
{{- end -}}
{{- $names := list -}}
{{- range .Values.providers -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- if and $names (not (has .Values.defaultProvider $names)) -}}
{{- fail (printf "defaultProvider %s is not one of the providers %v: TppRegistrations without spec.providerRef would be refused; add it to the list" .Values.defaultProvider $names) -}}
{{- end -}}
{{- end -}}

{{- /*
Labels of the `helm test` pod: not the selector labels, so that neither the Deployment's
ReplicaSet nor the Service nor the PodDisruptionBudget take it for an operator pod.
*/ -}}
{{- define "tpp-operator.testLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-check
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /*
The providers as the operator reads them (TPP_PROVIDERS_FILE): a JSON list of ClusterProvider
specs with their names, each allowing the watched namespaces unless it says otherwise.
*/ -}}
{{- define "tpp-operator.providers" -}}
{{- $out := list -}}
{{- range $p := .Values.providers -}}
{{- $p := deepCopy $p -}}
{{- if not $p.allowedNamespaces -}}
{{- if $.Values.clusterWide -}}
{{- $_ := set $p "allowedNamespaces" (dict "selector" (dict)) -}}
{{- else -}}
{{- $_ := set $p "allowedNamespaces" (dict "names" $.Values.watchNamespaces) -}}
{{- end -}}
{{- end -}}
{{- $out = append $out $p -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
