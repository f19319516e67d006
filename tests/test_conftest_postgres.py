import sqlalchemy as sa


def test_pg_url_isolates_a_schema(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(sa.text("create table probe (x int)"))
        connection.execute(sa.text("insert into probe values (41), (1)"))
        schema = connection.execute(sa.text("select current_schema()")).scalar_one()
        total = connection.execute(sa.text("select sum(x) from probe")).scalar_one()
    engine.dispose()
    assert schema.startswith("t_")
    assert total == 42
