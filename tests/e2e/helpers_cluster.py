"""What every e2e agent adds to the demo's settings skeleton (``demo.world``): the cluster.

Both e2e files run the agent against the real API server: the Kubernetes Deployment target with
the agent's own kubeconfig (its token may do only what the chart's Role grants) and leader
election on a Lease in the test's namespace.
"""

from __future__ import annotations

import pathlib
from typing import Any


def cluster_settings(
    kubeconfig: pathlib.Path, namespace: str, *, lease: str, identity: str, **kubernetes: str
) -> dict[str, Any]:
    """Settings to merge over ``demo.world.agent_config``; ``kubernetes``: the target's deployment,
    container and, for a canary, canary_deployment."""
    return {
        # Short polls: the agent's loop comes round (windows, policy ticks, a stop) at least every 0.2 s.
        "kafka": {"poll_timeout_ms": 200},
        "target": {
            "kind": "kubernetes",
            "kubeconfig": str(kubeconfig),
            "kubernetes": {"namespace": namespace, **kubernetes},
        },
        "leader_election": {
            "enabled": True,
            "namespace": namespace,
            "lease_name": lease,
            "identity": identity,
        },
    }
