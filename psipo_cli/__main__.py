from psipo_cli.cli import app

app()
