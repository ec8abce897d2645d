// Command podsim is a pod-phase simulator for a bare Kubernetes control plane
// (etcd + kube-apiserver + kube-controller-manager, no scheduler, no kubelet).
//
// It registers one fake Node and keeps it healthy (status heartbeat and
// Lease), binds every unscheduled Pod to it, marks bound Pods Running and
// Ready, finishes Job pods after a delay (Succeeded, or Failed on demand),
// and deletes terminating Pods with grace period 0 like a kubelet does.
// Deployment availability and Job success/failure are then computed by the
// real controllers in kube-controller-manager.
//
// Control per namespace, read at decision time from an optional ConfigMap
// named "podsim" in the pod's namespace:
//
//	fail:     Go regexp on the pod name; matching Job pods end Failed (exit 1)
//	hold:     Go regexp on the pod name; matching Job pods stay Running while
//	          the key matches
//	delay_ms: completion delay for Job pods (default: --job-delay)
//	crash:    Go regexp on the pod name; matching non-Job pods crash-loop:
//	          Running but not Ready, every container waiting in
//	          CrashLoopBackOff, its restartCount one higher every second
//
// Optionally it serves a fake kubelet endpoint over HTTPS (self-signed) on
// 127.0.0.1:--kubelet-port so that GET .../pods/P/log through kube-apiserver
// returns text.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/fnv"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

const controlConfigMap = "podsim"

var (
	kubeconfig  = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig (admin)")
	nodeName    = flag.String("node-name", "podsim-node", "name of the fake node")
	nodeIP      = flag.String("node-ip", "127.0.0.1", "InternalIP of the fake node (also the pods' host IP)")
	podCIDR     = flag.String("pod-cidr", "10.244.0.0/16", "IPv4 range of the pods' IPs (not loopback: the endpoint controllers refuse those)")
	kubeletPort = flag.Int("kubelet-port", 0, "serve fake kubelet log endpoint on 127.0.0.1:PORT over HTTPS (0: off)")
	jobDelay    = flag.Duration("job-delay", time.Second, "default time a Job pod runs before it completes")
	heartbeat   = flag.Duration("heartbeat", 10*time.Second, "node status / lease renew interval")
	workers     = flag.Int("workers", 4, "pod workers")
	verbose     = flag.Bool("verbose", false, "log every action")
)

type sim struct {
	cs       kubernetes.Interface
	pods     corelisters.PodLister
	podIdx   cache.Indexer
	cms      corelisters.ConfigMapLister
	queue    workqueue.TypedRateLimitingInterface[string]
	regexMu  sync.Mutex
	regexes  map[string]*regexp.Regexp
	bootTime time.Time
}

func logf(format string, args ...any) { log.Printf(format, args...) }
func vlogf(format string, args ...any) {
	if *verbose {
		log.Printf(format, args...)
	}
}

func main() {
	klog.InitFlags(nil)
	flag.Parse()
	parsePodCIDR()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("podsim ")

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS = 200
	cfg.Burst = 400
	cfg.UserAgent = "podsim"
	cs := kubernetes.NewForConfigOrDie(cfg)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	s := &sim{
		cs:       cs,
		regexes:  map[string]*regexp.Regexp{},
		bootTime: time.Now(),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Second),
		)),
	}

	if *kubeletPort > 0 {
		go s.serveKubelet(ctx)
	}

	// The node first, so that bindings point at an existing node.
	for {
		if err := s.ensureNode(ctx); err != nil {
			logf("registering node %s: %v (retrying)", *nodeName, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		break
	}
	logf("node %s registered", *nodeName)
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := s.ensureNode(ctx); err != nil {
			logf("node heartbeat: %v", err)
		}
	}, *heartbeat)
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := s.renewLease(ctx); err != nil {
			logf("lease renew: %v", err)
		}
	}, *heartbeat)

	podFactory := informers.NewSharedInformerFactory(cs, 0)
	podInf := podFactory.Core().V1().Pods()
	s.pods = podInf.Lister()
	s.podIdx = podInf.Informer().GetIndexer()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
	})

	cmFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", controlConfigMap).String()
		}))
	cmInf := cmFactory.Core().V1().ConfigMaps()
	s.cms = cmInf.Lister()
	cmChanged := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				cm, _ = t.Obj.(*corev1.ConfigMap)
			}
		}
		if cm == nil {
			return
		}
		pods, _ := s.pods.Pods(cm.Namespace).List(everything)
		for _, p := range pods {
			s.queue.Add(p.Namespace + "/" + p.Name)
		}
	}
	cmInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    cmChanged,
		UpdateFunc: func(_, n any) { cmChanged(n) },
		DeleteFunc: cmChanged,
	})

	podFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	podFactory.WaitForCacheSync(ctx.Done())
	cmFactory.WaitForCacheSync(ctx.Done())
	logf("caches synced; %d workers", *workers)

	for i := 0; i < *workers; i++ {
		go wait.UntilWithContext(ctx, s.worker, time.Second)
	}
	<-ctx.Done()
	s.queue.ShutDown()
	logf("stopping")
}

var everything = labels.Everything()

func (s *sim) worker(ctx context.Context) {
	for {
		key, quit := s.queue.Get()
		if quit {
			return
		}
		requeue, err := s.sync(ctx, key)
		switch {
		case err != nil:
			if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				logf("%s: %v", key, err)
			}
			s.queue.AddRateLimited(key)
		case requeue > 0:
			s.queue.Forget(key)
			s.queue.AddAfter(key, requeue)
		default:
			s.queue.Forget(key)
		}
		s.queue.Done(key)
	}
}

// sync drives one pod one step further. It returns a delay after which the
// pod must be looked at again (0: wait for the next event).
func (s *sim) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}

	// Terminating: what a kubelet does once containers are gone.
	if pod.DeletionTimestamp != nil {
		if pod.Spec.NodeName != "" && pod.Spec.NodeName != *nodeName {
			return 0, nil
		}
		if pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds == 0 {
			return 0, nil // already final; waiting for finalizers
		}
		zero := int64(0)
		uid := pod.UID
		err := s.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &uid},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, err
		}
		vlogf("%s: deleted (grace 0)", key)
		return 0, nil
	}

	if pod.Spec.NodeName == "" {
		b := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: *nodeName},
		}
		if err := s.cs.CoreV1().Pods(ns).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return 0, nil // bound meanwhile, or gone
			}
			return 0, err
		}
		vlogf("%s: bound to %s", key, *nodeName)
		return 0, nil
	}
	if pod.Spec.NodeName != *nodeName {
		return 0, nil
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, nil
	}

	if !isJobPod(pod) {
		cm, _ := s.cms.ConfigMaps(ns).Get(controlConfigMap)
		if s.matches(cm, "crash", name) {
			np := pod.DeepCopy()
			setCrashing(np)
			if _, err := s.cs.CoreV1().Pods(ns).UpdateStatus(ctx, np, metav1.UpdateOptions{}); err != nil {
				return 0, err
			}
			vlogf("%s: crash-looping", key)
			return time.Second, nil
		}
	}

	if pod.Status.Phase != corev1.PodRunning || !podReady(pod) {
		np := pod.DeepCopy()
		setRunning(np)
		if _, err := s.cs.CoreV1().Pods(ns).UpdateStatus(ctx, np, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
		vlogf("%s: running", key)
		if isJobPod(pod) {
			return s.jobDelay(ns), nil
		}
		return 0, nil
	}

	if !isJobPod(pod) {
		return 0, nil
	}
	// A running Job pod: decide whether and how it ends.
	cm, _ := s.cms.ConfigMaps(ns).Get(controlConfigMap)
	if s.matches(cm, "hold", name) {
		return 500 * time.Millisecond, nil
	}
	started := runningSince(pod)
	if left := time.Until(started.Add(s.jobDelay(ns))); left > 0 {
		return left, nil
	}
	fail := s.matches(cm, "fail", name)
	np := pod.DeepCopy()
	setFinished(np, fail)
	if _, err := s.cs.CoreV1().Pods(ns).UpdateStatus(ctx, np, metav1.UpdateOptions{}); err != nil {
		return 0, err
	}
	if fail {
		logf("%s: job pod Failed", key)
	} else {
		vlogf("%s: job pod Succeeded", key)
	}
	return 0, nil
}

func (s *sim) jobDelay(ns string) time.Duration {
	cm, _ := s.cms.ConfigMaps(ns).Get(controlConfigMap)
	if cm != nil {
		if v, ok := cm.Data["delay_ms"]; ok {
			if ms, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && ms >= 0 {
				return time.Duration(ms) * time.Millisecond
			}
			logf("configmap %s/%s: bad delay_ms %q", ns, controlConfigMap, v)
		}
	}
	return *jobDelay
}

func (s *sim) matches(cm *corev1.ConfigMap, k, name string) bool {
	if cm == nil {
		return false
	}
	expr, ok := cm.Data[k]
	if !ok || strings.TrimSpace(expr) == "" {
		return false
	}
	s.regexMu.Lock()
	re, ok := s.regexes[expr]
	if !ok {
		var err error
		re, err = regexp.Compile(expr)
		if err != nil {
			logf("configmap %s/%s: bad regexp in %s: %v", cm.Namespace, cm.Name, k, err)
		}
		s.regexes[expr] = re
	}
	s.regexMu.Unlock()
	return re != nil && re.MatchString(name)
}

func isJobPod(p *corev1.Pod) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == "Job" && strings.HasPrefix(o.APIVersion, "batch/") {
			return true
		}
	}
	if _, ok := p.Labels["batch.kubernetes.io/job-name"]; ok {
		return true
	}
	_, ok := p.Labels["job-name"]
	return ok
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func runningSince(p *corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return time.Now()
}

func setCond(p *corev1.Pod, t corev1.PodConditionType, st corev1.ConditionStatus, reason string, now metav1.Time) {
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type == t {
			if c.Status != st {
				c.Status = st
				c.LastTransitionTime = now
			}
			c.Reason = reason
			c.ObservedGeneration = p.Generation
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
		Type: t, Status: st, Reason: reason, LastTransitionTime: now, ObservedGeneration: p.Generation,
	})
}

func containerID(p *corev1.Pod, c string) string {
	return "podsim://" + string(p.UID) + "-" + c
}

// podIP is the pod's address in --pod-cidr, derived from its UID: the same
// for the pod's whole life, distinct for most pods. A kubelet gives pods
// addresses of the node's pod range; the node's own 127.0.0.1 would make
// kube-controller-manager's endpoint controllers fail on every ready pod of a
// Service (EndpointSlice and Endpoints refuse loopback addresses) and retry,
// with a warning Event each time.
func podIP(p *corev1.Pod) string {
	h := fnv.New32a()
	h.Write([]byte(p.UID))
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, podBase+1+h.Sum32()%podHosts)
	return ip.String()
}

// podBase and podHosts: --pod-cidr's network address and how many host
// addresses it has (no network or broadcast address), set once in main.
var podBase, podHosts uint32

func parsePodCIDR() {
	_, cidr, err := net.ParseCIDR(*podCIDR)
	if err != nil || cidr.IP.To4() == nil {
		log.Fatalf("--pod-cidr %q: not an IPv4 range", *podCIDR)
	}
	ones, bits := cidr.Mask.Size()
	if bits != 32 || ones < 8 || ones > 30 {
		log.Fatalf("--pod-cidr %q: an IPv4 range of /8 to /30 is needed", *podCIDR)
	}
	if cidr.Contains(net.IPv4(127, 0, 0, 1)) {
		log.Fatalf("--pod-cidr %q: loopback addresses are refused by the endpoint controllers", *podCIDR)
	}
	podBase = binary.BigEndian.Uint32(cidr.IP.To4())
	podHosts = uint32(1)<<(32-ones) - 2
}

func setRunning(p *corev1.Pod) {
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.HostIP = *nodeIP
	p.Status.HostIPs = []corev1.HostIP{{IP: *nodeIP}}
	ip := podIP(p)
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	p.Status.ObservedGeneration = p.Generation
	if p.Status.StartTime == nil {
		p.Status.StartTime = &now
	}
	if p.Status.QOSClass == "" {
		p.Status.QOSClass = corev1.PodQOSBestEffort
	}
	setCond(p, corev1.PodScheduled, corev1.ConditionTrue, "", now)
	setCond(p, corev1.PodReadyToStartContainers, corev1.ConditionTrue, "", now)
	setCond(p, corev1.PodInitialized, corev1.ConditionTrue, "", now)
	setCond(p, corev1.ContainersReady, corev1.ConditionTrue, "", now)
	setCond(p, corev1.PodReady, corev1.ConditionTrue, "", now)
	p.Status.InitContainerStatuses = nil
	for _, c := range p.Spec.InitContainers {
		st := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "podsim://" + c.Image, ContainerID: containerID(p, c.Name)}
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			t := true
			st.Ready, st.Started = true, &t
			st.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		} else {
			st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: st.ContainerID}
		}
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, st)
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		t := true
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "podsim://" + c.Image, ContainerID: containerID(p, c.Name),
			Ready: true, Started: &t,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
}

// setCrashing makes p look like a kubelet's crash-looping pod: Running, not
// Ready, each container just terminated (exit 1) and waiting in
// CrashLoopBackOff, its restartCount one higher than before.
func setCrashing(p *corev1.Pod) {
	old := map[string]int32{}
	for _, cs := range p.Status.ContainerStatuses {
		old[cs.Name] = cs.RestartCount
	}
	setRunning(p)
	now := metav1.Now()
	setCond(p, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady", now)
	setCond(p, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", now)
	for i := range p.Status.ContainerStatuses {
		cs := &p.Status.ContainerStatuses[i]
		f := false
		cs.Ready, cs.Started = false, &f
		cs.RestartCount = old[cs.Name] + 1
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "CrashLoopBackOff", Message: "back-off restarting failed container " + cs.Name,
		}}
		cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", StartedAt: now, FinishedAt: now, ContainerID: cs.ContainerID,
		}}
	}
}

func setFinished(p *corev1.Pod, fail bool) {
	now := metav1.Now()
	code, reason := int32(0), "Completed"
	p.Status.Phase = corev1.PodSucceeded
	if fail {
		code, reason = 1, "Error"
		p.Status.Phase = corev1.PodFailed
	}
	p.Status.ObservedGeneration = p.Generation
	setCond(p, corev1.PodReady, corev1.ConditionFalse, "PodCompleted", now)
	setCond(p, corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted", now)
	setCond(p, corev1.PodReadyToStartContainers, corev1.ConditionFalse, "", now)
	for i := range p.Status.ContainerStatuses {
		cs := &p.Status.ContainerStatuses[i]
		started := now
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		f := false
		cs.Ready, cs.Started = false, &f
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, StartedAt: started, FinishedAt: now, ContainerID: cs.ContainerID,
		}}
	}
	for i := range p.Status.InitContainerStatuses {
		cs := &p.Status.InitContainerStatuses[i]
		if cs.State.Running != nil { // sidecars stop with the pod
			f := false
			cs.Ready, cs.Started = false, &f
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: cs.State.Running.StartedAt, FinishedAt: now, ContainerID: cs.ContainerID,
			}}
		}
	}
}

// ---- node ----

func (s *sim) desiredNode(n *corev1.Node) {
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels["kubernetes.io/hostname"] = *nodeName
	n.Labels["kubernetes.io/os"] = "linux"
	n.Labels["kubernetes.io/arch"] = "amd64"
	n.Labels["type"] = "podsim"
	// The node lifecycle controller may taint a node it has not heard from
	// yet; a real kubelet's heartbeat makes it lift them, here we lift them
	// ourselves (spec update, done by ensureNode).
	var taints []corev1.Taint
	for _, t := range n.Spec.Taints {
		if !strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			taints = append(taints, t)
		}
	}
	n.Spec.Taints = taints
}

func (s *sim) desiredNodeStatus(n *corev1.Node) {
	now := metav1.Now()
	res := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("64"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse("1000"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	n.Status.Capacity = res
	n.Status.Allocatable = res.DeepCopy()
	n.Status.Phase = corev1.NodeRunning
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: *nodeIP},
		{Type: corev1.NodeHostName, Address: *nodeName},
	}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(*kubeletPort)
	n.Status.NodeInfo = corev1.NodeSystemInfo{
		MachineID: "podsim", SystemUUID: "podsim", BootID: "podsim-" + strconv.FormatInt(s.bootTime.Unix(), 10),
		KernelVersion: "podsim", OSImage: "podsim", ContainerRuntimeVersion: "podsim://1.0",
		KubeletVersion: "v1.0.0-podsim", OperatingSystem: "linux", Architecture: "amd64",
	}
	want := []struct {
		t      corev1.NodeConditionType
		st     corev1.ConditionStatus
		reason string
	}{
		{corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"},
		{corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"},
		{corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"},
		{corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"},
		{corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "RouteCreated"},
	}
	var conds []corev1.NodeCondition
	for _, w := range want {
		c := corev1.NodeCondition{Type: w.t, Status: w.st, Reason: w.reason, Message: "podsim", LastHeartbeatTime: now, LastTransitionTime: now}
		for _, old := range n.Status.Conditions {
			if old.Type == w.t && old.Status == w.st {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		conds = append(conds, c)
	}
	n.Status.Conditions = conds
}

func (s *sim) ensureNode(ctx context.Context) error {
	nodes := s.cs.CoreV1().Nodes()
	n, err := nodes.Get(ctx, *nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: *nodeName}}
		s.desiredNode(n)
		if n, err = nodes.Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return err
		}
		logf("node %s created", *nodeName)
	} else if err != nil {
		return err
	}
	if len(n.Spec.Taints) > 0 {
		before := len(n.Spec.Taints)
		s.desiredNode(n)
		if len(n.Spec.Taints) != before {
			if n, err = nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				return err
			}
			logf("node %s: lifted node.kubernetes.io/* taints", *nodeName)
		}
	}
	s.desiredNodeStatus(n)
	if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return err
	}
	return s.renewLease(ctx)
}

func (s *sim) renewLease(ctx context.Context) error {
	leases := s.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	dur := int32(40)
	l, err := leases.Get(ctx, *nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n, err := s.cs.CoreV1().Nodes().Get(ctx, *nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: *nodeName, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: nodeName, LeaseDurationSeconds: &dur, RenewTime: &now},
		}
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) { // kube-node-lease namespace not there yet
			return nil
		}
		return err
	} else if err != nil {
		return err
	}
	l.Spec.HolderIdentity = nodeName
	l.Spec.LeaseDurationSeconds = &dur
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// ---- fake kubelet (logs only) ----

func (s *sim) serveKubelet(ctx context.Context) {
	cert, err := selfSigned()
	if err != nil {
		log.Fatalf("kubelet cert: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/{ns}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		ns, name, ctr := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
		pod, err := s.pods.Pods(ns).Get(name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "podsim: log of %s/%s container %s (uid %s)\n", ns, name, ctr, pod.UID)
		fmt.Fprintf(w, "podsim: phase %s\n", pod.Status.Phase)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		vlogf("kubelet: unsupported %s %s", r.Method, r.URL.Path)
		http.Error(w, "podsim: not implemented", http.StatusNotImplemented)
	})
	srv := &http.Server{
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(*kubeletPort)),
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	go func() { <-ctx.Done(); srv.Close() }()
	logf("fake kubelet on https://%s", srv.Addr)
	if err := srv.ListenAndServeTLS("", ""); err != nil && err != http.ErrServerClosed {
		log.Fatalf("kubelet server: %v", err)
	}
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: *nodeName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost", *nodeName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
