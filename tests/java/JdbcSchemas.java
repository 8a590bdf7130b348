// pgjdbc's currentSchema through pgwolf: tests/tests/startup_params.rs runs
// this file as a single source file with the distribution's postgresql.jar.
//
//   java -cp postgresql.jar JdbcSchemas.java URL USER PASSWORD interleave|one-by-one
//
// URL has no currentSchema; this appends currentSchema=a and =b (pgjdbc
// sends it as search_path in the startup packet). Schemas a and b each
// hold a table t with one row naming its schema. interleave: both
// connections open, their queries alternating (transaction mode, one
// server connection for both); one-by-one: a, closed, then b (session
// mode). Prints `a=<v>` / `b=<v>` for every query, then `done`.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;

public class JdbcSchemas {
    static String one(Connection c) throws Exception {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT v FROM t")) {
            r.next();
            return r.getString(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], user = args[1], password = args[2];
        String sep = url.contains("?") ? "&" : "?";
        String a = url + sep + "currentSchema=a", b = url + sep + "currentSchema=b";
        if (args[3].equals("interleave")) {
            try (Connection ca = DriverManager.getConnection(a, user, password);
                 Connection cb = DriverManager.getConnection(b, user, password)) {
                for (int i = 0; i < 5; i++) {
                    System.out.println("a=" + one(ca));
                    System.out.println("b=" + one(cb));
                }
            }
        } else {
            for (int i = 0; i < 3; i++) {
                try (Connection ca = DriverManager.getConnection(a, user, password)) {
                    System.out.println("a=" + one(ca));
                }
                try (Connection cb = DriverManager.getConnection(b, user, password)) {
                    System.out.println("b=" + one(cb));
                }
            }
        }
        System.out.println("done");
    }
}
