"""Found by nnU-Net through ``nnUNet_extTrainer`` (see ``nnunet-diet trainer-path``).

nnU-Net imports this file as a top-level module and drops it again; the classes it re-exports
live in the installed package, so checkpoints, ``nnUNetv2_predict`` and DDP workers import them
normally.
"""

from nnunet_diet.nnunet.trainer import (  # noqa: F401
    nnUNetTrainerDAD,
    nnUNetTrainerDADAdam,
    nnUNetTrainerDADNoDeepSupervision,
)
from nnunet_diet.nnunet.variants import *  # noqa: F401,F403
