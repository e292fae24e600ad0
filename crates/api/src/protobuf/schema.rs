//! The message table the protobuf decoder reads by: the kinds read and every message they hold.
//!
//! Field numbers are those of Kubernetes' `generated.proto` files (k8s.io/api `core/v1`,
//! `batch/v1`, `apps/v1`, `policy/v1`, `autoscaling/v2`; k8s.io/apimachinery `pkg/apis/meta/v1`); whether a field is a Go
//! value or a pointer (`val` or `ptr`) follows the Go types in the same packages'
//! `types.go`. A message's doc names the fields it leaves out, which are refused when set.

use super::Ty::{
    Bool, EmptyStatus, Inline, Int, IntOrString, MapBytes, MapQuantity, MapStr, Msg, Quantity, Str,
    Time,
};
use super::{ptr, rep, val, Message};

/// The kinds read: apiVersion, kind, and the object's descriptor.
pub(super) static KINDS: &[(&str, &str, &Message)] = &[
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "ConfigMap", &CONFIG_MAP),
    ("v1", "Secret", &SECRET),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("v1", "Service", &SERVICE),
    ("batch/v1", "Job", &JOB),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("policy/v1", "PodDisruptionBudget", &POD_DISRUPTION_BUDGET),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        &HORIZONTAL_POD_AUTOSCALER,
    ),
];

// meta/v1

/// Not read: managedFields (17), which a create does not carry.
static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        val(1, "name", Str),
        val(2, "generateName", Str),
        val(3, "namespace", Str),
        val(4, "selfLink", Str),
        val(5, "uid", Str),
        val(6, "resourceVersion", Str),
        val(7, "generation", Int),
        val(8, "creationTimestamp", Time),
        ptr(9, "deletionTimestamp", Time),
        ptr(10, "deletionGracePeriodSeconds", Int),
        rep(11, "labels", MapStr),
        rep(12, "annotations", MapStr),
        rep(13, "ownerReferences", Msg(&OWNER_REFERENCE)),
        rep(14, "finalizers", Str),
    ],
};

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        val(1, "kind", Str),
        val(3, "name", Str),
        val(4, "uid", Str),
        val(5, "apiVersion", Str),
        ptr(6, "controller", Bool),
        ptr(7, "blockOwnerDeletion", Bool),
    ],
};

static LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[
        rep(1, "matchLabels", MapStr),
        rep(2, "matchExpressions", Msg(&LABEL_SELECTOR_REQUIREMENT)),
    ],
};

static LABEL_SELECTOR_REQUIREMENT: Message = Message {
    name: "LabelSelectorRequirement",
    fields: &[
        val(1, "key", Str),
        val(2, "operator", Str),
        rep(3, "values", Str),
    ],
};

// core/v1: the kinds

static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&NAMESPACE_SPEC)),
        val(3, "status", EmptyStatus),
    ],
};

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[rep(1, "finalizers", Str)],
};

static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        rep(2, "data", MapStr),
        rep(3, "binaryData", MapBytes),
        ptr(4, "immutable", Bool),
    ],
};

static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        rep(2, "data", MapBytes),
        val(3, "type", Str),
        rep(4, "stringData", MapStr),
        ptr(5, "immutable", Bool),
    ],
};

static SERVICE_ACCOUNT: Message = Message {
    name: "ServiceAccount",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        rep(2, "secrets", Msg(&OBJECT_REFERENCE)),
        rep(3, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)),
        ptr(4, "automountServiceAccountToken", Bool),
    ],
};

static OBJECT_REFERENCE: Message = Message {
    name: "ObjectReference",
    fields: &[
        val(1, "kind", Str),
        val(2, "namespace", Str),
        val(3, "name", Str),
        val(4, "uid", Str),
        val(5, "apiVersion", Str),
        val(6, "resourceVersion", Str),
        val(7, "fieldPath", Str),
    ],
};

static LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "LocalObjectReference",
    fields: &[val(1, "name", Str)],
};

static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&SERVICE_SPEC)),
        val(3, "status", EmptyStatus),
    ],
};

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        rep(1, "ports", Msg(&SERVICE_PORT)),
        rep(2, "selector", MapStr),
        val(3, "clusterIP", Str),
        val(4, "type", Str),
        rep(5, "externalIPs", Str),
        val(7, "sessionAffinity", Str),
        val(8, "loadBalancerIP", Str),
        rep(9, "loadBalancerSourceRanges", Str),
        val(10, "externalName", Str),
        val(11, "externalTrafficPolicy", Str),
        val(12, "healthCheckNodePort", Int),
        val(13, "publishNotReadyAddresses", Bool),
        ptr(14, "sessionAffinityConfig", Msg(&SESSION_AFFINITY_CONFIG)),
        ptr(17, "ipFamilyPolicy", Str),
        rep(18, "clusterIPs", Str),
        rep(19, "ipFamilies", Str),
        ptr(20, "allocateLoadBalancerNodePorts", Bool),
        ptr(21, "loadBalancerClass", Str),
        ptr(22, "internalTrafficPolicy", Str),
        ptr(23, "trafficDistribution", Str),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        val(1, "name", Str),
        val(2, "protocol", Str),
        val(3, "port", Int),
        val(4, "targetPort", IntOrString),
        val(5, "nodePort", Int),
        ptr(6, "appProtocol", Str),
    ],
};

static SESSION_AFFINITY_CONFIG: Message = Message {
    name: "SessionAffinityConfig",
    fields: &[ptr(1, "clientIP", Msg(&CLIENT_IP_CONFIG))],
};

static CLIENT_IP_CONFIG: Message = Message {
    name: "ClientIPConfig",
    fields: &[ptr(1, "timeoutSeconds", Int)],
};

// batch/v1

static JOB: Message = Message {
    name: "Job",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&JOB_SPEC)),
        val(3, "status", EmptyStatus),
    ],
};

/// Not read: podFailurePolicy (11), successPolicy (16), scheduling (17).
static JOB_SPEC: Message = Message {
    name: "JobSpec",
    fields: &[
        ptr(1, "parallelism", Int),
        ptr(2, "completions", Int),
        ptr(3, "activeDeadlineSeconds", Int),
        ptr(4, "selector", Msg(&LABEL_SELECTOR)),
        ptr(5, "manualSelector", Bool),
        val(6, "template", Msg(&POD_TEMPLATE_SPEC)),
        ptr(7, "backoffLimit", Int),
        ptr(8, "ttlSecondsAfterFinished", Int),
        ptr(9, "completionMode", Str),
        ptr(10, "suspend", Bool),
        ptr(12, "backoffLimitPerIndex", Int),
        ptr(13, "maxFailedIndexes", Int),
        ptr(14, "podReplacementPolicy", Str),
        ptr(15, "managedBy", Str),
    ],
};

static JOB_TEMPLATE_SPEC: Message = Message {
    name: "JobTemplateSpec",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&JOB_SPEC)),
    ],
};

static CRON_JOB: Message = Message {
    name: "CronJob",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&CRON_JOB_SPEC)),
        val(3, "status", EmptyStatus),
    ],
};

static CRON_JOB_SPEC: Message = Message {
    name: "CronJobSpec",
    fields: &[
        val(1, "schedule", Str),
        ptr(2, "startingDeadlineSeconds", Int),
        val(3, "concurrencyPolicy", Str),
        ptr(4, "suspend", Bool),
        val(5, "jobTemplate", Msg(&JOB_TEMPLATE_SPEC)),
        ptr(6, "successfulJobsHistoryLimit", Int),
        ptr(7, "failedJobsHistoryLimit", Int),
        ptr(8, "timeZone", Str),
    ],
};

// policy/v1 (`kubectl create poddisruptionbudget`)

static POD_DISRUPTION_BUDGET: Message = Message {
    name: "PodDisruptionBudget",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&POD_DISRUPTION_BUDGET_SPEC)),
        val(3, "status", EmptyStatus),
    ],
};

static POD_DISRUPTION_BUDGET_SPEC: Message = Message {
    name: "PodDisruptionBudgetSpec",
    fields: &[
        ptr(1, "minAvailable", IntOrString),
        ptr(2, "selector", Msg(&LABEL_SELECTOR)),
        ptr(3, "maxUnavailable", IntOrString),
        ptr(4, "unhealthyPodEvictionPolicy", Str),
    ],
};

// autoscaling/v2 (`kubectl autoscale`)

static HORIZONTAL_POD_AUTOSCALER: Message = Message {
    name: "HorizontalPodAutoscaler",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&HPA_SPEC)),
        val(3, "status", EmptyStatus),
    ],
};

static HPA_SPEC: Message = Message {
    name: "HorizontalPodAutoscalerSpec",
    fields: &[
        val(1, "scaleTargetRef", Msg(&CROSS_VERSION_OBJECT_REFERENCE)),
        ptr(2, "minReplicas", Int),
        val(3, "maxReplicas", Int),
        rep(4, "metrics", Msg(&METRIC_SPEC)),
        ptr(5, "behavior", Msg(&HPA_BEHAVIOR)),
    ],
};

static CROSS_VERSION_OBJECT_REFERENCE: Message = Message {
    name: "CrossVersionObjectReference",
    fields: &[
        val(1, "kind", Str),
        val(2, "name", Str),
        val(3, "apiVersion", Str),
    ],
};

/// Not read: object (2), pods (3), external (5), which corral's autoscaler refuses.
static METRIC_SPEC: Message = Message {
    name: "MetricSpec",
    fields: &[
        val(1, "type", Str),
        ptr(4, "resource", Msg(&RESOURCE_METRIC_SOURCE)),
        ptr(
            7,
            "containerResource",
            Msg(&CONTAINER_RESOURCE_METRIC_SOURCE),
        ),
    ],
};

static RESOURCE_METRIC_SOURCE: Message = Message {
    name: "ResourceMetricSource",
    fields: &[val(1, "name", Str), val(2, "target", Msg(&METRIC_TARGET))],
};

static CONTAINER_RESOURCE_METRIC_SOURCE: Message = Message {
    name: "ContainerResourceMetricSource",
    fields: &[
        val(1, "name", Str),
        val(2, "target", Msg(&METRIC_TARGET)),
        val(3, "container", Str),
    ],
};

static METRIC_TARGET: Message = Message {
    name: "MetricTarget",
    fields: &[
        val(1, "type", Str),
        ptr(2, "value", Quantity),
        ptr(3, "averageValue", Quantity),
        ptr(4, "averageUtilization", Int),
    ],
};

static HPA_BEHAVIOR: Message = Message {
    name: "HorizontalPodAutoscalerBehavior",
    fields: &[
        ptr(1, "scaleUp", Msg(&HPA_SCALING_RULES)),
        ptr(2, "scaleDown", Msg(&HPA_SCALING_RULES)),
    ],
};

static HPA_SCALING_RULES: Message = Message {
    name: "HPAScalingRules",
    fields: &[
        ptr(1, "selectPolicy", Str),
        rep(2, "policies", Msg(&HPA_SCALING_POLICY)),
        ptr(3, "stabilizationWindowSeconds", Int),
        ptr(4, "tolerance", Quantity),
    ],
};

static HPA_SCALING_POLICY: Message = Message {
    name: "HPAScalingPolicy",
    fields: &[
        val(1, "type", Str),
        val(2, "value", Int),
        val(3, "periodSeconds", Int),
    ],
};

// apps/v1

static DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&DEPLOYMENT_SPEC)),
        val(3, "status", EmptyStatus),
    ],
};

static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        ptr(1, "replicas", Int),
        ptr(2, "selector", Msg(&LABEL_SELECTOR)),
        val(3, "template", Msg(&POD_TEMPLATE_SPEC)),
        val(4, "strategy", Msg(&DEPLOYMENT_STRATEGY)),
        val(5, "minReadySeconds", Int),
        ptr(6, "revisionHistoryLimit", Int),
        val(7, "paused", Bool),
        ptr(9, "progressDeadlineSeconds", Int),
    ],
};

static DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[
        val(1, "type", Str),
        ptr(2, "rollingUpdate", Msg(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
};

static ROLLING_UPDATE_DEPLOYMENT: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[
        ptr(1, "maxUnavailable", IntOrString),
        ptr(2, "maxSurge", IntOrString),
    ],
};

// core/v1: the pod template

static POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[
        val(1, "metadata", Msg(&OBJECT_META)),
        val(2, "spec", Msg(&POD_SPEC)),
    ],
};

/// Not read: affinity (18), topologySpreadConstraints (33), ephemeralContainers (34),
/// schedulingGates (38), resourceClaims (39), schedulingGroup (43), evictionResponders (44).
static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        rep(1, "volumes", Msg(&VOLUME)),
        rep(2, "containers", Msg(&CONTAINER)),
        val(3, "restartPolicy", Str),
        ptr(4, "terminationGracePeriodSeconds", Int),
        ptr(5, "activeDeadlineSeconds", Int),
        val(6, "dnsPolicy", Str),
        rep(7, "nodeSelector", MapStr),
        val(8, "serviceAccountName", Str),
        val(9, "serviceAccount", Str),
        val(10, "nodeName", Str),
        val(11, "hostNetwork", Bool),
        val(12, "hostPID", Bool),
        val(13, "hostIPC", Bool),
        ptr(14, "securityContext", Msg(&POD_SECURITY_CONTEXT)),
        rep(15, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)),
        val(16, "hostname", Str),
        val(17, "subdomain", Str),
        val(19, "schedulerName", Str),
        rep(20, "initContainers", Msg(&CONTAINER)),
        ptr(21, "automountServiceAccountToken", Bool),
        rep(22, "tolerations", Msg(&TOLERATION)),
        rep(23, "hostAliases", Msg(&HOST_ALIAS)),
        val(24, "priorityClassName", Str),
        ptr(25, "priority", Int),
        ptr(26, "dnsConfig", Msg(&POD_DNS_CONFIG)),
        ptr(27, "shareProcessNamespace", Bool),
        rep(28, "readinessGates", Msg(&POD_READINESS_GATE)),
        ptr(29, "runtimeClassName", Str),
        ptr(30, "enableServiceLinks", Bool),
        ptr(31, "preemptionPolicy", Str),
        rep(32, "overhead", MapQuantity),
        ptr(35, "setHostnameAsFQDN", Bool),
        ptr(36, "os", Msg(&POD_OS)),
        ptr(37, "hostUsers", Bool),
        ptr(40, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        ptr(41, "hostnameOverride", Str),
    ],
};

/// Not read: restartPolicyRules (25).
static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        val(1, "name", Str),
        val(2, "image", Str),
        rep(3, "command", Str),
        rep(4, "args", Str),
        val(5, "workingDir", Str),
        rep(6, "ports", Msg(&CONTAINER_PORT)),
        rep(7, "env", Msg(&ENV_VAR)),
        val(8, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        rep(9, "volumeMounts", Msg(&VOLUME_MOUNT)),
        ptr(10, "livenessProbe", Msg(&PROBE)),
        ptr(11, "readinessProbe", Msg(&PROBE)),
        ptr(12, "lifecycle", Msg(&LIFECYCLE)),
        val(13, "terminationMessagePath", Str),
        val(14, "imagePullPolicy", Str),
        ptr(15, "securityContext", Msg(&SECURITY_CONTEXT)),
        val(16, "stdin", Bool),
        val(17, "stdinOnce", Bool),
        val(18, "tty", Bool),
        rep(19, "envFrom", Msg(&ENV_FROM_SOURCE)),
        val(20, "terminationMessagePolicy", Str),
        rep(21, "volumeDevices", Msg(&VOLUME_DEVICE)),
        ptr(22, "startupProbe", Msg(&PROBE)),
        rep(23, "resizePolicy", Msg(&CONTAINER_RESIZE_POLICY)),
        ptr(24, "restartPolicy", Str),
    ],
};

static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        val(1, "name", Str),
        val(2, "hostPort", Int),
        val(3, "containerPort", Int),
        val(4, "protocol", Str),
        val(5, "hostIP", Str),
    ],
};

static CONTAINER_RESIZE_POLICY: Message = Message {
    name: "ContainerResizePolicy",
    fields: &[val(1, "resourceName", Str), val(2, "restartPolicy", Str)],
};

static ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[
        val(1, "name", Str),
        val(2, "value", Str),
        ptr(3, "valueFrom", Msg(&ENV_VAR_SOURCE)),
    ],
};

/// Not read: fileKeyRef (5).
static ENV_VAR_SOURCE: Message = Message {
    name: "EnvVarSource",
    fields: &[
        ptr(1, "fieldRef", Msg(&OBJECT_FIELD_SELECTOR)),
        ptr(2, "resourceFieldRef", Msg(&RESOURCE_FIELD_SELECTOR)),
        ptr(3, "configMapKeyRef", Msg(&CONFIG_MAP_KEY_SELECTOR)),
        ptr(4, "secretKeyRef", Msg(&SECRET_KEY_SELECTOR)),
    ],
};

static OBJECT_FIELD_SELECTOR: Message = Message {
    name: "ObjectFieldSelector",
    fields: &[val(1, "apiVersion", Str), val(2, "fieldPath", Str)],
};

static RESOURCE_FIELD_SELECTOR: Message = Message {
    name: "ResourceFieldSelector",
    fields: &[
        val(1, "containerName", Str),
        val(2, "resource", Str),
        val(3, "divisor", Quantity),
    ],
};

static CONFIG_MAP_KEY_SELECTOR: Message = Message {
    name: "ConfigMapKeySelector",
    fields: &[
        val(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        val(2, "key", Str),
        ptr(3, "optional", Bool),
    ],
};

static SECRET_KEY_SELECTOR: Message = Message {
    name: "SecretKeySelector",
    fields: &[
        val(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        val(2, "key", Str),
        ptr(3, "optional", Bool),
    ],
};

static ENV_FROM_SOURCE: Message = Message {
    name: "EnvFromSource",
    fields: &[
        val(1, "prefix", Str),
        ptr(2, "configMapRef", Msg(&CONFIG_MAP_ENV_SOURCE)),
        ptr(3, "secretRef", Msg(&SECRET_ENV_SOURCE)),
    ],
};

static CONFIG_MAP_ENV_SOURCE: Message = Message {
    name: "ConfigMapEnvSource",
    fields: &[
        val(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        ptr(2, "optional", Bool),
    ],
};

static SECRET_ENV_SOURCE: Message = Message {
    name: "SecretEnvSource",
    fields: &[
        val(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        ptr(2, "optional", Bool),
    ],
};

static RESOURCE_REQUIREMENTS: Message = Message {
    name: "ResourceRequirements",
    fields: &[
        rep(1, "limits", MapQuantity),
        rep(2, "requests", MapQuantity),
        rep(3, "claims", Msg(&RESOURCE_CLAIM)),
    ],
};

static RESOURCE_CLAIM: Message = Message {
    name: "ResourceClaim",
    fields: &[val(1, "name", Str), val(2, "request", Str)],
};

static VOLUME_MOUNT: Message = Message {
    name: "VolumeMount",
    fields: &[
        val(1, "name", Str),
        val(2, "readOnly", Bool),
        val(3, "mountPath", Str),
        val(4, "subPath", Str),
        ptr(5, "mountPropagation", Str),
        val(6, "subPathExpr", Str),
        ptr(7, "recursiveReadOnly", Str),
        rep(8, "bindMountOptions", Str),
    ],
};

static VOLUME_DEVICE: Message = Message {
    name: "VolumeDevice",
    fields: &[val(1, "name", Str), val(2, "devicePath", Str)],
};

static VOLUME: Message = Message {
    name: "Volume",
    fields: &[
        val(1, "name", Str),
        val(2, "volumeSource", Inline(&VOLUME_SOURCE)),
    ],
};

/// The volume kinds corral's node agent mounts; any other is a 415.
static VOLUME_SOURCE: Message = Message {
    name: "VolumeSource",
    fields: &[
        ptr(1, "hostPath", Msg(&HOST_PATH_VOLUME_SOURCE)),
        ptr(2, "emptyDir", Msg(&EMPTY_DIR_VOLUME_SOURCE)),
        ptr(6, "secret", Msg(&SECRET_VOLUME_SOURCE)),
        ptr(10, "persistentVolumeClaim", Msg(&PVC_VOLUME_SOURCE)),
        ptr(19, "configMap", Msg(&CONFIG_MAP_VOLUME_SOURCE)),
    ],
};

static HOST_PATH_VOLUME_SOURCE: Message = Message {
    name: "HostPathVolumeSource",
    fields: &[val(1, "path", Str), ptr(2, "type", Str)],
};

static EMPTY_DIR_VOLUME_SOURCE: Message = Message {
    name: "EmptyDirVolumeSource",
    fields: &[
        val(1, "medium", Str),
        ptr(2, "sizeLimit", Quantity),
        ptr(3, "mode", Int),
    ],
};

static SECRET_VOLUME_SOURCE: Message = Message {
    name: "SecretVolumeSource",
    fields: &[
        val(1, "secretName", Str),
        rep(2, "items", Msg(&KEY_TO_PATH)),
        ptr(3, "defaultMode", Int),
        ptr(4, "optional", Bool),
        ptr(5, "defaultUser", Int),
    ],
};

static CONFIG_MAP_VOLUME_SOURCE: Message = Message {
    name: "ConfigMapVolumeSource",
    fields: &[
        val(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        rep(2, "items", Msg(&KEY_TO_PATH)),
        ptr(3, "defaultMode", Int),
        ptr(4, "optional", Bool),
        ptr(5, "defaultUser", Int),
    ],
};

static KEY_TO_PATH: Message = Message {
    name: "KeyToPath",
    fields: &[
        val(1, "key", Str),
        val(2, "path", Str),
        ptr(3, "mode", Int),
        ptr(4, "user", Int),
    ],
};

static PVC_VOLUME_SOURCE: Message = Message {
    name: "PersistentVolumeClaimVolumeSource",
    fields: &[val(1, "claimName", Str), val(2, "readOnly", Bool)],
};

static PROBE: Message = Message {
    name: "Probe",
    fields: &[
        val(1, "handler", Inline(&PROBE_HANDLER)),
        val(2, "initialDelaySeconds", Int),
        val(3, "timeoutSeconds", Int),
        val(4, "periodSeconds", Int),
        val(5, "successThreshold", Int),
        val(6, "failureThreshold", Int),
        ptr(7, "terminationGracePeriodSeconds", Int),
    ],
};

static PROBE_HANDLER: Message = Message {
    name: "ProbeHandler",
    fields: &[
        ptr(1, "exec", Msg(&EXEC_ACTION)),
        ptr(2, "httpGet", Msg(&HTTP_GET_ACTION)),
        ptr(3, "tcpSocket", Msg(&TCP_SOCKET_ACTION)),
        ptr(4, "grpc", Msg(&GRPC_ACTION)),
    ],
};

static LIFECYCLE: Message = Message {
    name: "Lifecycle",
    fields: &[
        ptr(1, "postStart", Msg(&LIFECYCLE_HANDLER)),
        ptr(2, "preStop", Msg(&LIFECYCLE_HANDLER)),
        ptr(3, "stopSignal", Str),
    ],
};

static LIFECYCLE_HANDLER: Message = Message {
    name: "LifecycleHandler",
    fields: &[
        ptr(1, "exec", Msg(&EXEC_ACTION)),
        ptr(2, "httpGet", Msg(&HTTP_GET_ACTION)),
        ptr(3, "tcpSocket", Msg(&TCP_SOCKET_ACTION)),
        ptr(4, "sleep", Msg(&SLEEP_ACTION)),
    ],
};

static EXEC_ACTION: Message = Message {
    name: "ExecAction",
    fields: &[rep(1, "command", Str)],
};

static HTTP_GET_ACTION: Message = Message {
    name: "HTTPGetAction",
    fields: &[
        val(1, "path", Str),
        val(2, "port", IntOrString),
        val(3, "host", Str),
        val(4, "scheme", Str),
        rep(5, "httpHeaders", Msg(&HTTP_HEADER)),
        ptr(6, "protocol", Str),
    ],
};

static HTTP_HEADER: Message = Message {
    name: "HTTPHeader",
    fields: &[val(1, "name", Str), val(2, "value", Str)],
};

static TCP_SOCKET_ACTION: Message = Message {
    name: "TCPSocketAction",
    fields: &[val(1, "port", IntOrString), val(2, "host", Str)],
};

static GRPC_ACTION: Message = Message {
    name: "GRPCAction",
    fields: &[
        val(1, "port", Int),
        ptr(2, "service", Str),
        ptr(3, "mode", Str),
    ],
};

static SLEEP_ACTION: Message = Message {
    name: "SleepAction",
    fields: &[val(1, "seconds", Int)],
};

/// Not read: windowsOptions (10).
static SECURITY_CONTEXT: Message = Message {
    name: "SecurityContext",
    fields: &[
        ptr(1, "capabilities", Msg(&CAPABILITIES)),
        ptr(2, "privileged", Bool),
        ptr(3, "seLinuxOptions", Msg(&SE_LINUX_OPTIONS)),
        ptr(4, "runAsUser", Int),
        ptr(5, "runAsNonRoot", Bool),
        ptr(6, "readOnlyRootFilesystem", Bool),
        ptr(7, "allowPrivilegeEscalation", Bool),
        ptr(8, "runAsGroup", Int),
        ptr(9, "procMount", Str),
        ptr(11, "seccompProfile", Msg(&SECCOMP_PROFILE)),
        ptr(12, "appArmorProfile", Msg(&APP_ARMOR_PROFILE)),
    ],
};

/// Not read: windowsOptions (8).
static POD_SECURITY_CONTEXT: Message = Message {
    name: "PodSecurityContext",
    fields: &[
        ptr(1, "seLinuxOptions", Msg(&SE_LINUX_OPTIONS)),
        ptr(2, "runAsUser", Int),
        ptr(3, "runAsNonRoot", Bool),
        rep(4, "supplementalGroups", Int),
        ptr(5, "fsGroup", Int),
        ptr(6, "runAsGroup", Int),
        rep(7, "sysctls", Msg(&SYSCTL)),
        ptr(9, "fsGroupChangePolicy", Str),
        ptr(10, "seccompProfile", Msg(&SECCOMP_PROFILE)),
        ptr(11, "appArmorProfile", Msg(&APP_ARMOR_PROFILE)),
        ptr(12, "supplementalGroupsPolicy", Str),
        ptr(13, "seLinuxChangePolicy", Str),
    ],
};

static CAPABILITIES: Message = Message {
    name: "Capabilities",
    fields: &[rep(1, "add", Str), rep(2, "drop", Str)],
};

static SE_LINUX_OPTIONS: Message = Message {
    name: "SELinuxOptions",
    fields: &[
        val(1, "user", Str),
        val(2, "role", Str),
        val(3, "type", Str),
        val(4, "level", Str),
    ],
};

static SECCOMP_PROFILE: Message = Message {
    name: "SeccompProfile",
    fields: &[val(1, "type", Str), ptr(2, "localhostProfile", Str)],
};

static APP_ARMOR_PROFILE: Message = Message {
    name: "AppArmorProfile",
    fields: &[val(1, "type", Str), ptr(2, "localhostProfile", Str)],
};

static SYSCTL: Message = Message {
    name: "Sysctl",
    fields: &[val(1, "name", Str), val(2, "value", Str)],
};

static TOLERATION: Message = Message {
    name: "Toleration",
    fields: &[
        val(1, "key", Str),
        val(2, "operator", Str),
        val(3, "value", Str),
        val(4, "effect", Str),
        ptr(5, "tolerationSeconds", Int),
    ],
};

static HOST_ALIAS: Message = Message {
    name: "HostAlias",
    fields: &[val(1, "ip", Str), rep(2, "hostnames", Str)],
};

static POD_DNS_CONFIG: Message = Message {
    name: "PodDNSConfig",
    fields: &[
        rep(1, "nameservers", Str),
        rep(2, "searches", Str),
        rep(3, "options", Msg(&POD_DNS_CONFIG_OPTION)),
    ],
};

static POD_DNS_CONFIG_OPTION: Message = Message {
    name: "PodDNSConfigOption",
    fields: &[val(1, "name", Str), ptr(2, "value", Str)],
};

static POD_READINESS_GATE: Message = Message {
    name: "PodReadinessGate",
    fields: &[val(1, "conditionType", Str)],
};

static POD_OS: Message = Message {
    name: "PodOS",
    fields: &[val(1, "name", Str)],
};
