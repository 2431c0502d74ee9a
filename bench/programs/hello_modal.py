"""Hello world on modal-ray: one `.remote()` call and a small `.map`.

`modal run bench/programs/hello_modal.py` runs `main`; `python bench/programs/hello_modal.py` does
the same inside `with app.run():`. Its raw Ray twin is `hello_raw.py`.
"""

import modal

app = modal.App("hello-bench")


@app.function()
def hello(name: str) -> str:
    return f"Hello, {name}!"


@app.local_entrypoint()
def main() -> None:
    print(hello.remote("world"))
    print(list(hello.map(str(i) for i in range(20))))


if __name__ == "__main__":
    with app.run():
        main()
