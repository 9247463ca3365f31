"""What a node uses unless told otherwise — where its files are and how long its subnet
lease lives — named once here for the agent, the CNI plugins and the command line.

No imports, on purpose: tulle.cni.forward reads AGENT_SOCKET in every plugin exec,
where each imported module costs milliseconds (and the CLI builds its --help from these).
"""

RUN_DIR = "/run/tulle"                           # runtime state, gone at reboot
AGENT_SOCKET_NAME = "agent.sock"
SUBNET_ENV_NAME = "subnet.env"

AGENT_SOCKET = f"{RUN_DIR}/{AGENT_SOCKET_NAME}"  # the agent's CNI socket (a plugin config's agentSocket wins)
SUBNET_ENV = f"{RUN_DIR}/{SUBNET_ENV_NAME}"      # the node's lease as FLANNEL_* lines, for the tulle plugin
STATE_ROOT = "/var/lib/tulle"                    # what survives a reboot
AGENT_STATE_DIR = f"{STATE_ROOT}/agent"          # what an agent keeps across restarts (its last subnet, BIRD)
STORE = f"sqlite://{STATE_ROOT}/store.db"        # the embedded store of a one-host cluster
REGISTRY_PREFIX = "/registry"                    # where API objects live in the store (as kube-apiserver)
LEADER_LEASE = 15              # seconds a dead leader holds the cluster-wide controllers (kube-controller-manager's)

LEASE_TTL = 24 * 3600          # seconds a subnet lease lives unless renewed (Flannel's 24 h)
LEASE_RENEW_MARGIN = 3600      # renewed this long before it would expire (Flannel's 1 h)
