"""`import IPython; IPython.get_ipython()` in a local notebook run (aml_databricks.compute.driver.notebook_shell)."""

from aml_databricks.compute.driver.notebook_shell import get_ipython

__all__ = ["get_ipython"]
