"""nftables rules owned by one attachment, found again by their comment.

A plugin's host-side rules (ipMasq, macspoofchk) live in one base chain of a
table shared by all attachments. Each rule carries `attachment.tag(network,
cid, ifname)` as its comment, so DEL finds them without the pod's netns or a
prevResult, and GC finds those whose attachment is gone. The table and its
base chain stay once made (deleting them could race with another ADD); only
the tagged rules come and go, each change one atomic transaction.

Planning (`plan_*`) is pure: listed objects in, a Transaction out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tulle.cni import attachment
from tulle.errors import KernelError
from tulle.kernel import nft

RETRIES = 3  # a concurrent DEL/GC may delete a rule between our list and our delete


def stale(network: str, keep: set[tuple[str, str]]) -> Callable[[str], bool]:
    """GC's selector: comments of `network`'s attachments that are not in `keep`
    (other networks' rules and untagged rules are never selected)."""
    own = attachment.network_tag(network)
    kept = {attachment.tag(network, cid, ifname) for cid, ifname in keep}

    def select(comment: str) -> bool:
        parsed = attachment.parse_tag(comment)
        return parsed is not None and parsed[0] == own and comment not in kept

    return select


@dataclass(frozen=True)
class TaggedChain:
    """A base chain (`base`, in table `family` `table`) whose rules belong to attachments."""

    family: str
    table: str
    base: nft.Chain

    @property
    def chain(self) -> str:
        return self.base.name

    # --- pure planning -------------------------------------------------

    def _tx(self) -> nft.Transaction:
        return nft.Transaction(self.family, self.table)

    def tagged(self, objects: list[dict] | None, select: Callable[[str], bool]) -> list[nft.Rule]:
        return [r for r in nft.rules(objects, self.chain) if r.comment and select(r.comment)]

    def plan_replace(self, objects: list[dict] | None, tag: str, bodies: list[list[nft.Expr]]) -> nft.Transaction:
        """Make exactly `bodies` the rules tagged `tag` (create table and chain as needed).

        Table and chain are added only when the listing lacks them: re-adding an
        existing base chain costs the kernel a hook re-validation (~10 ms here),
        more than the rest of the call. Should they vanish after the listing, the
        transaction fails and `_retry` plans again from a fresh listing.
        """
        tx = self._tx()
        if self.chain not in nft.chains(objects):
            tx.add(nft.Table(self.family, self.table)).add(self.base)
        for rule in self.tagged(objects, lambda c: c == tag):
            tx.delete(rule)
        for body in bodies:
            tx.add(nft.Rule(self.chain, body, comment=tag))
        return tx

    def plan_remove(self, objects: list[dict] | None, select: Callable[[str], bool]) -> nft.Transaction:
        tx = self._tx()
        for rule in self.tagged(objects, select):
            tx.delete(rule)
        return tx

    # --- kernel --------------------------------------------------------

    def list(self) -> list[dict] | None:
        return nft.list_table(self.family, self.table)

    def replace(self, tag: str, bodies: list[list[nft.Expr]]) -> None:
        self._retry(lambda: self.plan_replace(self.list(), tag, bodies))

    def remove(self, tag: str) -> None:
        """Delete the rules of one attachment; nothing there is fine (DEL is idempotent)."""
        self._retry(lambda: self.plan_remove(self.list(), lambda c: c == tag))

    def rules_of(self, tag: str) -> list[nft.Rule]:
        return self.tagged(self.list(), lambda c: c == tag)

    def collect(self, network: str, keep: set[tuple[str, str]]) -> None:
        """GC: delete the rules of `network` whose attachment is not in `keep`."""
        self._retry(lambda: self.plan_remove(self.list(), stale(network, keep)))

    def _retry(self, plan: Callable[[], nft.Transaction]) -> None:
        for attempt in range(RETRIES):
            try:
                nft.run(plan())
                return
            except KernelError:
                if attempt == RETRIES - 1:
                    raise
