"""Pipelines: stages of functions connected by bounded Channels.

Written once on the public primitives (Channel, WorkStealingPool), so it runs
on either backend.

Each stage reads its input Channel and writes the next one; every Channel
holds at most ``capacity`` items, so a slow stage holds back the ones before
it and memory stays bounded whatever the input size.  A stage with
``workers=N`` runs N loops.  They take items in batches (a batch is what the
channel holds right now, up to 64, shared out between the loops) to keep the
per-item cost low.

Order: a stage with one loop keeps its input order.  An *ordered* stage with
several loops numbers each batch as it takes it (under a lock, so numbers
follow channel order) and hands its results on strictly in number order:
a loop that finished early waits its turn with its results, so the reorder
buffer is bounded by the number of loops.  Output order equals input order
when every stage is ordered.

With ``executor=`` a stage's calls go to that Executor, one item per
``submit``, at most ``workers`` in flight per stage; the stage's own loops
(one feeding the executor, one collecting results in order) still run on an
internal WorkStealingPool.

The modules, from the user's side down:

* ``front``: Pipeline (start/send/recv/close, map, stats) and map's iterator;
* ``stage``: Stage and StageStats, what the user says and reads of a stage;
* ``run``: _Run, one execution: its loops (inline, or feeding and collecting
  an executor's calls), how it ends, and the runs cancelled at exit;
* ``stage_run``: _StageRun, one stage inside a run: batching, order
  keeping, counters.
"""

from fastconc.pipeline.front import Pipeline
from fastconc.pipeline.stage import ON_ERROR as ON_ERROR
from fastconc.pipeline.stage import Stage, StageStats
from fastconc.pipeline.stage_run import BATCH as BATCH
from fastconc.pipeline.stage_run import BATCH_SECONDS as BATCH_SECONDS

__all__ = ["Pipeline", "Stage", "StageStats"]
