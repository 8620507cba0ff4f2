"""Built-in suites, installed as the package ``robusttest.suites`` (see pyproject.toml).

Found by ``robusttest.resources.builtin_suites``; ``robusttest suite list`` lists them.
"""
