"""A small NetworkPolicy evaluator (networking.k8s.io/v1 semantics) used to
check, from the rendered objects, who can open a connection to whom.

A connection src -> dst:port/protocol is allowed when
- src's egress allows it: no policy in src's namespace selects src with
  policyType Egress, or some such policy has an egress rule whose peers match
  dst and whose ports match; and
- dst's ingress allows it: the same with Ingress, peers matching src.
Peers: podSelector alone = pods in the policy's namespace; namespaceSelector
alone = every pod in matching namespaces; both = matching pods in matching
namespaces; ipBlock = every endpoint whose IP is inside the CIDR and outside
its exceptions (pod IPs included, which is the conservative reading: most
CNIs match pod IPs against ipBlocks). Empty `from`/`to` = everyone; empty
`ports` = every port. Named ports resolve against the destination's ports.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None  # None: outside the cluster
    labels: tuple[tuple[str, str], ...]
    ip: str
    ports: tuple[tuple[str, int, str], ...] = ()  # (name, port, protocol)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def endpoint(name, namespace, labels, ip, ports=()):
    return Endpoint(name, namespace, tuple(sorted(labels.items())), ip, tuple(ports))


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class Cluster:
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    endpoints: list[Endpoint] = field(default_factory=list)
    policies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (namespace, NetworkPolicy)

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.namespaces[name] = {"kubernetes.io/metadata.name": name, **(labels or {})}

    def add(self, ep: Endpoint) -> Endpoint:
        if ep.namespace is not None and ep.namespace not in self.namespaces:
            self.add_namespace(ep.namespace)
        self.endpoints.append(ep)
        return ep

    def add_policy(self, namespace: str, policy: dict[str, Any]) -> None:
        assert policy["kind"] == "NetworkPolicy"
        self.policies.append((namespace, policy))

    # -- evaluation ---------------------------------------------------------
    def _peer_matches(self, peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            ip = ipaddress.ip_address(other.ip)
            if ip not in net:
                return False
            return not any(ip in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except") or [])
        if other.namespace is None:
            return False  # selectors only ever match pods
        ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
        if ns_sel is None:
            ns_ok = other.namespace == policy_ns
        else:
            ns_ok = selector_matches(ns_sel, self.namespaces[other.namespace])
        pod_ok = True if pod_sel is None else selector_matches(pod_sel, other.label_map)
        return ns_ok and pod_ok

    @staticmethod
    def _port_matches(rule_ports, dst: Endpoint, port: int, protocol: str) -> bool:
        if not rule_ports:
            return True
        for rp in rule_ports:
            if rp.get("protocol", "TCP") != protocol:
                continue
            if "port" not in rp:
                return True
            wanted = rp["port"]
            if isinstance(wanted, str):
                if any(n == wanted and p == port and pr == protocol for n, p, pr in dst.ports):
                    return True
                continue
            if wanted <= port <= rp.get("endPort", wanted):
                return True
        return False

    def _selecting(self, ep: Endpoint, direction: str):
        for ns, policy in self.policies:
            spec = policy["spec"]
            types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
            if ns == ep.namespace and direction in types and selector_matches(spec["podSelector"], ep.label_map):
                yield ns, spec

    def _side_allows(self, subject: Endpoint, other: Endpoint, dst: Endpoint, port: int, protocol: str, direction: str) -> bool:
        if subject.namespace is None:
            return True  # nothing outside the cluster is policed
        selecting = list(self._selecting(subject, direction))
        if not selecting:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for ns, spec in selecting:
            for rule in spec.get(key) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(self._peer_matches(p, ns, other) for p in peers)
                if peer_ok and self._port_matches(rule.get("ports"), dst, port, protocol):
                    return True
        return False

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return (self._side_allows(src, dst, dst, port, protocol, "Egress")
                and self._side_allows(dst, src, dst, port, protocol, "Ingress"))

    def reachable_ports(self, src: Endpoint, dst: Endpoint) -> set[tuple[int, str]]:
        return {(p, pr) for _, p, pr in dst.ports if self.allowed(src, dst, p, pr)}
