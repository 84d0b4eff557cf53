# The README's commands. Each one sets itself up through scripts/bootstrap.sh.
.PHONY: test demo docs

test:
	./scripts/test.sh

demo:
	./scripts/demo.sh

docs:
	./scripts/bootstrap.sh
	.venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html
