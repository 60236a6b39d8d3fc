{{/* Chart name, overridable. */}}
{{- define "drift-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "drift-agent.fullname" -}}
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

{{- define "drift-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "drift-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drift-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "drift-agent.labels" -}}
helm.sh/chart: {{ include "drift-agent.chart" . }}
{{ include "drift-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "drift-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "drift-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Everything below is also callable from a parent chart that has drift-agent as a dependency
(README: "Adding the agent to your own chart"): pass the subchart's own context,
`include "drift-agent.sidecar" (index .Subcharts "drift-agent")`, so .Values, .Chart and .Files
are drift-agent's.
*/}}

{{/* Mount points inside the agent container; agent.yaml points at them. */}}
{{- define "drift-agent.configDir" -}}/etc/drift-agent/config{{- end }}
{{- define "drift-agent.policyDir" -}}/etc/drift-agent/policy{{- end }}
{{- define "drift-agent.overridesDir" -}}/etc/drift-agent/overrides{{- end }}
{{- define "drift-agent.secretsDir" -}}/var/run/secrets/drift-agent{{- end }}
{{/* The agent's working directory, on the read-only root filesystem; its `.state` is the
writable emptyDir, so every setting whose default is a relative `.state/...` path (canary
state, retrain work dir, ...) lands there without the chart having to know each one. */}}
{{- define "drift-agent.workDir" -}}/var/lib/drift-agent{{- end }}
{{- define "drift-agent.stateDir" -}}/var/lib/drift-agent/.state{{- end }}

{{/* Pods running the agent carry this label; the metrics Service and the PDB select on it.
It is not app.kubernetes.io/name, so a serving pod keeps its own name label. */}}
{{- define "drift-agent.podLabels" -}}
drift-agent.io/release: {{ include "drift-agent.fullname" . }}
{{- end }}

{{- define "drift-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "drift-agent.httpPort" -}}
{{- dig "http" "port" 9108 (.Values.agent | default dict) | int }}
{{- end }}

{{- define "drift-agent.drainTimeoutSeconds" -}}
{{- dig "runtime" "drain_timeout_s" 25 (.Values.agent | default dict) }}
{{- end }}

{{/* terminationGracePeriodSeconds: the agent's drain bound, rounded up, plus the margin. */}}
{{- define "drift-agent.graceSeconds" -}}
{{- add (include "drift-agent.drainTimeoutSeconds" . | float64 | ceil | int) (int .Values.terminationGraceMarginSeconds) }}
{{- end }}

{{/* The `*_file` setting a mounted Secret fills for one secrets.sinks entry (context: dict
"root" "entry" "index"): `setting` if given, else by the sink's type. */}}
{{- define "drift-agent.sinkSecretSetting" -}}
{{- $defaults := dict "slack" "webhook_url_file" "pagerduty" "routing_key_file" "webhook" "secret_file" "alertmanager" "bearer_token_file" -}}
{{- $entry := .entry -}}
{{- $sink := dict -}}
{{- range (dig "alerting" "sinks" list (.root.Values.agent | default dict)) -}}
{{- if eq (toString .name) (toString $entry.sink) }}{{ $sink = . }}{{ end -}}
{{- end -}}
{{- if not $sink -}}
{{- fail (printf "secrets.sinks[%d].sink: no sink named %q in agent.alerting.sinks" .index (toString $entry.sink)) -}}
{{- end -}}
{{- $setting := $entry.setting | default (get $defaults (toString $sink.type)) -}}
{{- if not $setting -}}
{{- fail (printf "secrets.sinks[%d]: sink %q has type %q, which takes no secret file; remove the entry or give `setting`" .index (toString $entry.sink) (toString $sink.type)) -}}
{{- end -}}
{{- if not (hasSuffix "_file" $setting) -}}
{{- fail (printf "secrets.sinks[%d].setting must name a *_file setting of the sink, got %q" .index $setting) -}}
{{- end -}}
{{- $setting -}}
{{- end }}

{{/* Settings the chart owns: set from other values so the Role, the mounts and the agent agree. */}}
{{- define "drift-agent.validate" -}}
{{- $agent := .Values.agent | default dict -}}
{{- $owned := list
  (list "target.kind" "set target.kind instead")
  (list "target.kubernetes.namespace" "remove it (the release namespace)")
  (list "target.kubernetes.deployment" "set target.kubernetes.deployment instead")
  (list "target.kubernetes.container" "set target.kubernetes.container instead")
  (list "target.kubernetes.canary_deployment" "set target.kubernetes.canaryDeployment instead")
  (list "target.kserve.namespace" "remove it (the release namespace)")
  (list "target.kserve.name" "set target.kserve.inferenceService instead")
  (list "target.local.path" "remove it (it lives in the state dir)")
  (list "leader_election.enabled" "set leaderElection.enabled instead")
  (list "leader_election.lease_name" "set leaderElection.leaseName instead")
  (list "leader_election.namespace" "remove it (the release namespace)")
  (list "policy.path" "set the top-level policy value instead")
  (list "overrides.path" "set the top-level overrides value instead")
  (list "runtime.state_dir" "remove it (an emptyDir the chart mounts; size: stateDir.sizeLimit)")
  (list "audit.path" "remove it (it lives in the state dir)")
  (list "retrain.runner.kind" "set retrain.runner instead")
  (list "retrain.runner.kubernetes.namespace" "remove it (the release namespace)")
  (list "kafka.sasl_password_file" "set secrets.kafkaSasl instead") -}}
{{- range $owned }}
{{- $node := $agent }}{{- $present := true }}
{{- range splitList "." (index . 0) }}
{{- if and $present (kindIs "map" $node) (hasKey $node .) }}{{ $node = get $node . }}{{ else }}{{ $present = false }}{{ end }}
{{- end }}
{{- if $present }}
{{- fail (printf "agent.%s is set by the chart; %s" (index . 0) (index . 1)) }}
{{- end }}
{{- end }}
{{- if hasKey (dig "kafka" dict $agent) "sasl_password" }}
{{- fail "agent.kafka.sasl_password: secrets are never put in the ConfigMap; name an existing Secret in secrets.kafkaSasl.secretName instead" }}
{{- end }}
{{- range $index, $sink := (dig "alerting" "sinks" list $agent) }}
{{- range list "webhook_url" "routing_key" "secret" "bearer_token" "token" "password" }}
{{- if hasKey $sink . }}
{{- fail (printf "agent.alerting.sinks[%d].%s: secrets are never put in the ConfigMap; name an existing Secret in secrets.sinks (sink: %s) instead" $index . (toString $sink.name)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") .Values.serving.create }}
{{- if ne .Values.target.kind "kubernetes" }}
{{- fail (printf "mode=sidecar renders the serving Deployment, which needs target.kind=kubernetes (got %q); with KServe the InferenceService owns the pods: use mode=standalone, or serving.create=false and include drift-agent.sidecar in the predictor spec" .Values.target.kind) }}
{{- end }}
{{- if not .Values.serving.image.repository }}
{{- fail "serving.image.repository is required in mode=sidecar: it is the model server the chart renders (or set serving.create=false, or mode=standalone)" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.mode "standalone") (gt (int .Values.standalone.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "standalone.replicas > 1 needs leaderElection.enabled=true: otherwise every replica would act on the same incidents" }}
{{- end }}
{{- end }}

{{/* The agent's settings file: values.agent plus the settings the chart owns. */}}
{{- define "drift-agent.agentConfig" -}}
{{- include "drift-agent.validate" . -}}
{{- $config := deepCopy (.Values.agent | default dict) -}}
{{- $state := include "drift-agent.stateDir" . -}}
{{- $target := dict "kind" .Values.target.kind -}}
{{- if eq .Values.target.kind "kubernetes" -}}
{{- $_ := set $target "kubernetes" (dict
    "namespace" .Release.Namespace
    "deployment" .Values.target.kubernetes.deployment
    "container" .Values.target.kubernetes.container
    "canary_deployment" (.Values.target.kubernetes.canaryDeployment | default nil)) -}}
{{- else if eq .Values.target.kind "kserve" -}}
{{- $_ := set $target "kserve" (dict "namespace" .Release.Namespace "name" .Values.target.kserve.inferenceService) -}}
{{- else -}}
{{- $_ := set $target "local" (dict "path" (printf "%s/serving.json" $state)) -}}
{{- end -}}
{{- $owned := dict
    "target" $target
    "leader_election" (dict "enabled" .Values.leaderElection.enabled "lease_name" .Values.leaderElection.leaseName "namespace" .Release.Namespace)
    "policy" (dict "path" (printf "%s/policy.yaml" (include "drift-agent.policyDir" .)))
    "overrides" (dict "path" (printf "%s/overrides.yaml" (include "drift-agent.overridesDir" .)))
    "runtime" (dict "state_dir" $state)
    "audit" (dict "path" (printf "%s/audit.jsonl" $state)) -}}
{{- if eq .Values.retrain.runner "kubernetes" -}}
{{- $_ := set $owned "retrain" (dict "runner" (dict "kind" "kubernetes" "kubernetes" (dict "namespace" .Release.Namespace))) -}}
{{- end -}}
{{- if .Values.secrets.kafkaSasl.secretName -}}
{{- $_ := set $owned "kafka" (dict "sasl_password_file" (printf "%s/kafka/sasl-password" (include "drift-agent.secretsDir" .))) -}}
{{- end -}}
{{- $config = mergeOverwrite $config $owned -}}
{{- $sinks := dig "alerting" "sinks" list $config -}}
{{- range $index, $entry := .Values.secrets.sinks -}}
{{- $setting := include "drift-agent.sinkSecretSetting" (dict "root" $ "entry" $entry "index" $index) -}}
{{- range $sinks -}}
{{- if eq (toString .name) (toString $entry.sink) -}}
{{- $envSetting := printf "%s_env" (trimSuffix "_file" $setting) -}}
{{- if or (hasKey . $setting) (hasKey . $envSetting) -}}
{{- fail (printf "agent.alerting.sinks (%s): %s comes from secrets.sinks[%d]; remove %s/%s from the sink" $entry.sink $setting $index $setting $envSetting) -}}
{{- end -}}
{{- $_ := set . $setting (printf "%s/sinks/%s/%s" (include "drift-agent.secretsDir" $) $entry.sink (trimSuffix "_file" $setting)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $config -}}
{{- end }}

{{/* policy.yaml: values.policy, or the shipped default (needs .Files: the chart's own templates). */}}
{{- define "drift-agent.policyFile" -}}
{{- if .Values.policy }}{{ toYaml .Values.policy }}{{ else }}{{ .Files.Get "files/policy.yaml" }}{{ end -}}
{{- end }}

{{- define "drift-agent.overridesFile" -}}
{{- if .Values.overrides }}{{ toYaml .Values.overrides }}{{ else }}{{ .Files.Get "files/overrides.yaml" }}{{ end -}}
{{- end }}

{{/* Pod annotation that rolls the pods when settings or policy change. The override file is
left out on purpose: the agent re-reads it in place, and a restart would lose nothing but time. */}}
{{- define "drift-agent.configChecksum" -}}
checksum/drift-agent-config: {{ printf "%s\n%s\n%s" (include "drift-agent.agentConfig" .) (toYaml .Values.policy) .Chart.Version | sha256sum }}
{{- end }}

{{/* The agent container: a list item for a pod's `containers:`. */}}
{{- define "drift-agent.sidecar" -}}
{{- $port := include "drift-agent.httpPort" . | int -}}
{{- $readiness := ternary .Values.probes.sidecarReadinessPath .Values.probes.readiness.path (eq .Values.mode "sidecar") -}}
- name: drift-agent
  image: {{ include "drift-agent.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["drift-agent"]
  workingDir: {{ include "drift-agent.workDir" . }}
  args: ["run", "--config", "{{ include "drift-agent.configDir" . }}/agent.yaml"]
  env:
    # The same bound the pod's terminationGracePeriodSeconds is computed from.
    - name: DRIFT_AGENT_RUNTIME__DRAIN_TIMEOUT_S
      value: {{ include "drift-agent.drainTimeoutSeconds" . | quote }}
    # The memory budget is memory.budget_fraction of this limit (memory.budget_mib overrides it).
    - name: DRIFT_AGENT_MEMORY__CONTAINER_LIMIT_MIB
      valueFrom:
        resourceFieldRef:
          containerName: drift-agent
          resource: limits.memory
          divisor: 1Mi
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: agent-metrics
      containerPort: {{ $port }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: {{ .Values.probes.liveness.path }}
      port: agent-metrics
    initialDelaySeconds: {{ .Values.probes.liveness.initialDelaySeconds }}
    periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: {{ $readiness }}
      port: agent-metrics
    periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  resources:
    {{- include "drift-agent.resources" .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: drift-agent-config
      mountPath: {{ include "drift-agent.configDir" . }}
      readOnly: true
    - name: drift-agent-policy
      mountPath: {{ include "drift-agent.policyDir" . }}
      readOnly: true
    # The whole directory, never subPath: kubelet refreshes a ConfigMap volume by swapping a
    # symlink inside the directory, which a subPath mount never sees. Mounted this way an edit of
    # the override ConfigMap reaches the running agent (it re-reads the file), with no restart.
    - name: drift-agent-overrides
      mountPath: {{ include "drift-agent.overridesDir" . }}
      readOnly: true
    - name: drift-agent-state
      mountPath: {{ include "drift-agent.stateDir" . }}
    - name: drift-agent-tmp
      mountPath: /tmp
    # The API token, CA and namespace where in-cluster clients look for them; in this container
    # only (the pod sets automountServiceAccountToken: false).
    - name: drift-agent-api-token
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
    {{- if .Values.secrets.kafkaSasl.secretName }}
    - name: drift-agent-secret-kafka
      mountPath: {{ include "drift-agent.secretsDir" . }}/kafka
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- range $index, $entry := .Values.secrets.sinks }}
    - name: drift-agent-secret-sink-{{ $index }}
      mountPath: {{ include "drift-agent.secretsDir" $ }}/sinks/{{ $entry.sink }}
      readOnly: true
    {{- end }}
{{- end }}

{{/* The agent's volumes: list items for a pod's `volumes:`. */}}
{{- define "drift-agent.volumes" -}}
{{- $fullname := include "drift-agent.fullname" . -}}
- name: drift-agent-config
  configMap:
    name: {{ $fullname }}-config
- name: drift-agent-policy
  configMap:
    name: {{ $fullname }}-policy
- name: drift-agent-overrides
  configMap:
    name: {{ $fullname }}-overrides
- name: drift-agent-state
  emptyDir:
    sizeLimit: {{ .Values.stateDir.sizeLimit }}
- name: drift-agent-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- /* What automountServiceAccountToken would mount, for the agent container alone. */}}
- name: drift-agent-api-token
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: {{ .Values.serviceAccount.tokenExpirationSeconds }}
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- /* 0444: the agent runs as a non-root user without an fsGroup (in sidecar mode the pod's
securityContext belongs to the model server), so group-only modes would be unreadable. */}}
{{- with .Values.secrets.kafkaSasl }}
{{- if .secretName }}
- name: drift-agent-secret-kafka
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0444
    items:
      - key: {{ .key }}
        path: sasl-password
{{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- range $index, $entry := .Values.secrets.sinks }}
- name: drift-agent-secret-sink-{{ $index }}
  secret:
    secretName: {{ $entry.secretName }}
    defaultMode: 0444
    items:
      - key: {{ $entry.key }}
        path: {{ include "drift-agent.sinkSecretSetting" (dict "root" $ "entry" $entry "index" $index) | trimSuffix "_file" }}
{{- end }}
{{- end }}

{{/* A resources block with every quantity as a string: server-side apply refuses a bare number
(`nvidia.com/gpu: 2`) where the API declares a quantity, so values may say 2 or "2". */}}
{{- define "drift-agent.resources" -}}
{{- $out := dict -}}
{{- range $section, $quantities := . -}}
{{- $strings := dict -}}
{{- range $name, $quantity := $quantities -}}
{{- $_ := set $strings $name (toString $quantity) -}}
{{- end -}}
{{- $_ := set $out $section $strings -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}
