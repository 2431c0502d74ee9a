"""`python -m modal.cli`: the same CLI as the `modal` command."""

from modal_ray.cli import main

if __name__ == "__main__":
    main()
