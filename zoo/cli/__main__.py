from zoo.cli import app

app()
