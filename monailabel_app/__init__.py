"""MONAI Label app serving training cases in DAD order (see docs)."""
