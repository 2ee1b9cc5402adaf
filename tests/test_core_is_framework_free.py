import subprocess
import sys


def test_core_imports_without_torch_nnunet_or_monai():
    heavy = ("torch", "nnunetv2", "monai", "monailabel", "pandas", "matplotlib")
    code = (f"import sys, nnunet_diet.core; bad = [m for m in {heavy!r} if m in sys.modules]; "
            "print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
