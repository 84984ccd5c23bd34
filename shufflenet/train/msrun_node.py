"""msrun for one node of a multi-node run, with the scheduler hosted by node 0 only.

    python -m shufflenet.train.msrun_node --node_rank=R ...msrun's own arguments...

msrun starts the cluster's scheduler on every machine where ``master_addr``
is a local address. On a real cluster that is node 0 alone, but two "nodes"
on one machine (how the launch is tested) both start one, the second fails
to bind the port and its msrun exits 1 after a successful training. Here
node 0 (``--node_rank`` 0, or unset) hosts it and no other node does;
everything else is msrun's own process manager, unchanged.
"""
from __future__ import annotations


def main() -> None:
    from mindspore.parallel.cluster.run import get_args, run

    args = get_args()
    try:
        from mindspore.parallel.cluster.process_entity import _ProcessManager
    except ImportError:  # another MindSpore layout: plain msrun
        run(args)
        return
    manager = _ProcessManager(args)
    manager.is_master = args.node_rank <= 0
    manager.run()


if __name__ == "__main__":
    main()
