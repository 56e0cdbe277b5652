from soilcast.cli import app

app()
